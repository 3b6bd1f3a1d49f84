// helm-render: renders a Helm chart the way `helm template` does, without Helm (Helm is not
// packaged in Debian). It implements the part of Helm the AccuLLM chart uses, with Helm's
// semantics:
//   - Go text/template with the sprig functions (Helm's set: sprig.TxtFuncMap() without env
//     and expandenv) plus Helm's include, tpl, required, toYaml, fromYaml, toJson, fromJson
//     and lookup (which, as under `helm template`, finds nothing);
//   - .Values: values.yaml deep-merged with each -f file in order (a null deletes a key), and
//     parsed as Helm does (YAML -> JSON -> Go, so numbers are float64);
//   - .Release (Name, Namespace, Service, IsInstall, IsUpgrade, Revision), .Chart (Chart.yaml
//     with Helm's capitalised fields), .Template (Name, BasePath), .Files (Get, GetBytes, Lines);
//   - every templates/* file is parsed into one set (partials are files starting with "_"),
//     rendered with missingkey=zero and "<no value>" removed; empty results are dropped;
//     NOTES.txt is rendered to NOTES.txt beside the manifests, not as a manifest.
//
// It does not validate values.schema.json (tests/ops/validate_chart.py does) nor implement
// .Capabilities, subcharts, hooks or `helm template --set`.
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run ./helm/render \
//	    -chart helm/accullm -f values.yaml -release accullm -namespace default -out DIR
//
// writes DIR/<chart>/templates/<file>.yaml (the layout of `helm template --output-dir`).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v2"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

// Files mirrors Helm's .Files: the chart's files (templates excluded), by relative path.
type Files map[string][]byte

func (f Files) GetBytes(name string) []byte { return f[name] }
func (f Files) Get(name string) string      { return string(f[name]) }
func (f Files) Lines(name string) []string {
	if f[name] == nil {
		return []string{}
	}
	return strings.Split(strings.TrimRight(string(f[name]), "\n"), "\n")
}

// yamlToJSONValue parses YAML as Helm does (sigs.k8s.io/yaml: YAML -> JSON -> interface{}).
func yamlToJSONValue(data []byte) (interface{}, error) {
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	j, err := json.Marshal(jsonable(raw))
	if err != nil {
		return nil, err
	}
	var out interface{}
	err = json.Unmarshal(j, &out)
	return out, err
}

func jsonable(v interface{}) interface{} {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := map[string]interface{}{}
		for k, val := range t {
			m[fmt.Sprint(k)] = jsonable(val)
		}
		return m
	case []interface{}:
		for i := range t {
			t[i] = jsonable(t[i])
		}
	}
	return v
}

// toYaml is Helm's: JSON marshalling then YAML (sorted keys), without the final newline.
func toYaml(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var obj interface{}
	if err := yaml.Unmarshal(j, &obj); err != nil {
		return ""
	}
	out, err := yaml.Marshal(obj)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

func fromYaml(s string) map[string]interface{} {
	v, err := yamlToJSONValue([]byte(s))
	if m, ok := v.(map[string]interface{}); ok && err == nil {
		return m
	}
	if err != nil {
		return map[string]interface{}{"Error": err.Error()}
	}
	return map[string]interface{}{}
}

func toJSON(v interface{}) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

// mergeValues merges src into dst the way Helm coalesces -f files: maps deep, the rest
// replaced, and a null in src deletes the key.
func mergeValues(dst, src map[string]interface{}) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				mergeValues(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

func readValues(path string) (map[string]interface{}, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	v, err := yamlToJSONValue(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if v == nil {
		return map[string]interface{}{}, nil
	}
	m, ok := v.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: not a mapping", path)
	}
	return m, nil
}

func run() error {
	var files valueFiles
	chartDir := flag.String("chart", "", "chart directory")
	release := flag.String("release", "accullm", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	outDir := flag.String("out", "", "output directory (the layout of helm template --output-dir)")
	flag.Var(&files, "f", "values file (repeatable; later files win)")
	flag.Parse()
	if *chartDir == "" || *outDir == "" {
		return fmt.Errorf("usage: helm-render -chart DIR [-f values.yaml]... -out DIR")
	}

	chartMeta, err := readValues(filepath.Join(*chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	chart := map[string]interface{}{}
	for k, v := range chartMeta { // Helm exposes Chart.yaml's fields capitalised: .Chart.Name
		chart[strings.ToUpper(k[:1])+k[1:]] = v
	}
	name, _ := chart["Name"].(string)
	if name == "" {
		return fmt.Errorf("Chart.yaml has no name")
	}

	values, err := readValues(filepath.Join(*chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		v, err := readValues(f)
		if err != nil {
			return err
		}
		mergeValues(values, v)
	}

	chartFiles := Files{}
	var templateNames []string
	templates := map[string]string{}
	err = filepath.Walk(*chartDir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(*chartDir, path)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "templates/") {
			tname := name + "/" + rel
			templates[tname] = string(data)
			templateNames = append(templateNames, tname)
		} else {
			chartFiles[rel] = data
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(templateNames)

	root := template.New("gotpl").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = toYaml
	funcs["fromYaml"] = fromYaml
	funcs["toJson"] = toJSON
	funcs["fromJson"] = fromJSON
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, fmt.Errorf(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, fmt.Errorf(msg)
		}
		return v, nil
	}
	funcs["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil // as `helm template`: no cluster
	}
	funcs["include"] = func(string, interface{}) (string, error) { return "", nil }
	funcs["tpl"] = func(string, interface{}) (string, error) { return "", nil }
	root.Funcs(funcs)
	// include and tpl need the parsed set: rebind them now that it exists.
	root.Funcs(template.FuncMap{
		"include": func(n string, data interface{}) (string, error) {
			var b bytes.Buffer
			err := root.ExecuteTemplate(&b, n, data)
			return b.String(), err
		},
		"tpl": func(text string, data interface{}) (string, error) {
			t, err := root.Clone()
			if err != nil {
				return "", err
			}
			t, err = t.New("tpl").Parse(text)
			if err != nil {
				return "", err
			}
			var b bytes.Buffer
			err = t.Execute(&b, data)
			return strings.ReplaceAll(b.String(), "<no value>", ""), err
		},
	})
	for _, n := range templateNames {
		if _, err := root.New(n).Parse(templates[n]); err != nil {
			return err
		}
	}

	if err := os.RemoveAll(filepath.Join(*outDir, name)); err != nil {
		return err
	}
	rendered := 0
	for _, n := range templateNames {
		base := filepath.Base(n)
		if strings.HasPrefix(base, "_") {
			continue
		}
		data := map[string]interface{}{
			"Values": values,
			"Chart":  chart,
			"Files":  chartFiles,
			"Release": map[string]interface{}{
				"Name": *release, "Namespace": *namespace, "Service": "Helm",
				"IsInstall": true, "IsUpgrade": false, "Revision": 1,
			},
			"Template": map[string]interface{}{"Name": n, "BasePath": name + "/templates"},
		}
		var b bytes.Buffer
		if err := root.ExecuteTemplate(&b, n, data); err != nil {
			return err
		}
		out := strings.ReplaceAll(b.String(), "<no value>", "")
		if strings.TrimSpace(out) == "" {
			continue
		}
		dest := filepath.Join(*outDir, n)
		if base == "NOTES.txt" {
			dest = filepath.Join(*outDir, name, "NOTES.txt")
		}
		if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
			return err
		}
		if base != "NOTES.txt" {
			out = "---\n# Source: " + n + "\n" + strings.TrimLeft(out, "\n")
			rendered++
		}
		if err := os.WriteFile(dest, []byte(out), 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("helm-render: %s (release %s, namespace %s): %d manifest files in %s\n", name, *release,
		*namespace, rendered, filepath.Join(*outDir, name, "templates"))
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "helm-render:", err)
		os.Exit(1)
	}
}
