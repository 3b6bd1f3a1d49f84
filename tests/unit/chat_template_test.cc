// Chat templates: the Jinja subset (expressions, statements, filters, whitespace control),
// its @huggingface/jinja-specific behaviour, error reporting, the limits that keep hostile
// templates bounded, and ChatTemplate::Load's handling of tokenizer_config.json.
// Byte parity with @huggingface/jinja on real templates: tests/integration/chat_template_parity_test.sh.
#include "text/chat_template.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "common/json.h"
#include "tests/support/test_support.h"
#include "text/jinja.h"

namespace accullm::text {
namespace {

using jinja::Template;
using jinja::Value;

// Renders `source` with `context_json` (a JSON object) as the variables.
absl::StatusOr<std::string> RenderWith(const std::string& source, const std::string& context_json = "{}",
                                       const jinja::RenderOptions& options = {}) {
  auto t = Template::Parse(source);
  if (!t.ok()) return t.status();
  auto ctx = ParseJson(context_json, "context");
  if (!ctx.ok()) return ctx.status();
  std::vector<std::pair<std::string, Value>> vars;
  for (const auto& kv : ctx->as_object()) vars.emplace_back(std::string(kv.key()), Value::FromJson(kv.value()));
  return t->Render(vars, options);
}

std::string R(const std::string& source, const std::string& context_json = "{}") {
  auto r = RenderWith(source, context_json);
  EXPECT_TRUE(r.ok()) << source << " → " << r.status();
  return r.ok() ? *r : "<error: " + std::string(r.status().message()) + ">";
}

absl::Status Err(const std::string& source, const std::string& context_json = "{}",
                 const jinja::RenderOptions& options = {}) {
  auto r = RenderWith(source, context_json, options);
  EXPECT_FALSE(r.ok()) << source << " rendered " << (r.ok() ? *r : "");
  return r.ok() ? absl::OkStatus() : r.status();
}

TEST(ChatTemplateJinja, LiteralsAndPrinting) {
  EXPECT_EQ(R("a{{ 1 }}b{{ 'x' }}{{ \"y\" }}"), "a1bxy");
  EXPECT_EQ(R("{{ 1.0 }} {{ 3 / 2 }} {{ 4 / 2 }} {{ 0.1 + 0.2 }} {{ -0.0 }}"), "1.0 1.5 2.0 0.30000000000000004 -0.0");
  EXPECT_EQ(R("{{ true }} {{ True }} {{ false }} [{{ none }}] [{{ None }}] [{{ undefined_thing }}]"),
            "true true false [] [] []");
  EXPECT_EQ(R("{{ [1, 'a', none, true] }}"), "[1, \"a\", null, true]");
  EXPECT_EQ(R("{{ {'a': 1, 'b': [2.5]} }}"), "{\"a\": 1, \"b\": [2.5]}");
  EXPECT_EQ(R("{{ 'a\\nb\\t\\'c\\' \\\\ \\u00e9' }}"), "a\nb\t'c' \\ \xC3\xA9");
  EXPECT_EQ(R("{{ 'con' 'cat' }}"), "concat");
  EXPECT_EQ(R("{{ 10 ** 21 }} {{ 2 ** 0.5 }} {{ 1 / 3 }} {{ 0.000001 / 10 }}"),
            "1e+21 1.4142135623730951 0.3333333333333333 1e-7");
}

TEST(ChatTemplateJinja, Arithmetic) {
  EXPECT_EQ(R("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 * 3 + 1 }}"), "3 -4 1 -1 1024 7");
  EXPECT_EQ(R("{{ 1 + 2.0 }} {{ 5 - 3 }} {{ (1 + 2) * 3 }}"), "3.0 2 9");
  // HF concatenates when either side of + is a string; ~ always does.
  EXPECT_EQ(R("{{ 'a' + 1 }} {{ 1 ~ 2 }} {{ 'n=' ~ 1.0 }} {{ 'x' ~ true }}"), "a1 12 n=1 xtrue");
}

TEST(ChatTemplateJinja, ComparisonsAndLogic) {
  EXPECT_EQ(R("{{ 1 < 2 }} {{ 2 <= 1 }} {{ 'a' == 'a' }} {{ 'a' != 'b' }} {{ 1 == 1.0 }}"),
            "true false true true true");
  EXPECT_EQ(R("{{ 0 or 'x' }} {{ 'y' and 0 }} {{ not [] }} {{ not 'a' }}"), "x 0 true false");
  EXPECT_EQ(R("{{ 'b' in 'abc' }} {{ 'z' not in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }}"),
            "true true true true");
  EXPECT_EQ(R("{{ 'x' in undefined_list }} {{ 'x' not in undefined_list }}"), "false true");
  EXPECT_EQ(R("{{ 'yes' if 1 > 0 else 'no' }} {{ 'yes' if [] else 'no' }}"), "yes no");
  EXPECT_EQ(R("{{ not 1 == 2 }}"), "true");  // not binds looser than ==
}

TEST(ChatTemplateJinja, Tests) {
  EXPECT_EQ(R("{{ x is defined }} {{ y is defined }} {{ y is undefined }} {{ n is none }} {{ n is not none }}",
              R"({"x": 1, "n": null})"),
            "true false true true false");
  EXPECT_EQ(R("{{ 's' is string }} {{ 1 is number }} {{ 1 is integer }} {{ 1.5 is integer }} {{ [1] is iterable }}"
              " {{ {} is mapping }} {{ 3 is odd }} {{ 4 is even }} {{ true is boolean }} {{ 'ab' is lower }}"),
            "true true true false true true true true true true");
  EXPECT_FALSE(Err("{{ 1 is prime }}").ok());
}

TEST(ChatTemplateJinja, MembersSlicesAndMethods) {
  const std::string ctx = R"({"m": {"role": "user", "content": "  Hi there  "}, "xs": [1, 2, 3, 4]})";
  EXPECT_EQ(R("{{ m.role }} {{ m['role'] }} [{{ m.missing }}] {{ m.get('role') }} {{ m.get('nope', 'dflt') }}", ctx),
            "user user [] user dflt");
  EXPECT_EQ(R("{{ xs[0] }} {{ xs[-1] }} {{ xs[1:] }} {{ xs[:-1] }} {{ xs[::-1] }} {{ xs[::2] }} [{{ xs[10] }}]", ctx),
            "1 4 [2, 3, 4] [1, 2, 3] [4, 3, 2, 1] [1, 3] []");
  EXPECT_EQ(R("[{{ m.content.strip() }}] [{{ m.content.lstrip() }}] [{{ m.content.rstrip() }}]", ctx),
            "[Hi there] [Hi there  ] [  Hi there]");
  EXPECT_EQ(R("{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a,b,c'.split(',', 1) }}"),
            "[\"a\", \"b\", \"\", \"c\"] [\"a\", \"b\"] [\"a\", \"b,c\"]");
  EXPECT_EQ(
      R("{{ 'hello'.startswith('he') }} {{ 'hello'.endswith(('x', 'lo')) }} {{ 'Hi'.upper() }} {{ 'Hi'.lower() }}"),
      "true true HI hi");
  EXPECT_EQ(R("{{ 'abc'[1] }} {{ 'abc'[-1] }} {{ 'héllo'[1:3] }} {{ 'abc'.length }} {{ xs.length }}", ctx),
            "b c él 3 4");
  EXPECT_EQ(R("{% for k, v in m.items() %}{{ k }}={{ v|trim }};{% endfor %}", ctx), "role=user;content=Hi there;");
  EXPECT_EQ(R("{{ m.keys() }} {{ {'a': 1}.values() }}", ctx), "[\"role\", \"content\"] [1]");
  // HF's strip() ignores its argument (unlike Python): all whitespace goes, nothing else.
  EXPECT_EQ(R("[{{ '\\nxx\\n'.strip('\\n') }}] [{{ 'xxhixx'.strip('x') }}]"), "[xx] [xxhixx]");
}

TEST(ChatTemplateJinja, Filters) {
  EXPECT_EQ(
      R("{{ '  a b  '|trim }}|{{ 'ab'|upper }}|{{ 'AB'|lower }}|{{ 'hello world'|title }}|{{ 'hELLO'|capitalize }}"),
      "a b|AB|ab|Hello World|HELLO");
  EXPECT_EQ(R("{{ [1, 2]|length }} {{ 'héllo😀'|length }} {{ {'a': 1}|length }}"), "2 7 1");
  EXPECT_EQ(R("{{ ['a', 'b']|join(', ') }} {{ [1, none, 'x']|join }} {{ 'abc'|join('-') }}"), "a, b 1x a-b-c");
  EXPECT_EQ(
      R("{{ x|default('d') }} {{ ''|default('d') }} {{ ''|default('d', true) }} {{ 0|default(5, boolean=true) }}"),
      "d  d 5");
  EXPECT_EQ(R("{{ [3, 1, 2]|first }} {{ [3, 1, 2]|last }} {{ [3, 1, 2]|sort }} {{ [3, 1, 2]|reverse }} {{ [1, 1, "
              "2]|unique }}"),
            "3 2 [1, 2, 3] [2, 1, 3] [1, 2]");
  EXPECT_EQ(R("{{ 'a-b-c'|replace('-', '+') }} {{ 'a-b-c'|replace('-', '+', 1) }} {{ 'ab'|replace('', '.') }}"),
            "a+b+c a+b-c .a.b.");
  EXPECT_EQ(R("{{ '1'|int + 1 }} {{ 'x'|int }} {{ '2.5'|float }} {{ 2.7|int }} {{ -3|abs }} {{ 3|string ~ '!' }}"),
            "2 0 2.5 2 3 3!");
  EXPECT_EQ(R("{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb'|indent(2, true) }}"), "a\n    b\n\n    c|  a\n  b");
  const std::string people = R"({"p": [{"n": "a", "ok": true, "age": 3}, {"n": "b", "ok": false, "age": 1}]})";
  EXPECT_EQ(
      R("{{ p|selectattr('ok')|map(attribute='n')|list }} {{ p|rejectattr('ok')|map(attribute='n')|join }}", people),
      "[\"a\"] b");
  EXPECT_EQ(R("{{ p|selectattr('n', 'equalto', 'b')|map(attribute='age')|first }}", people), "1");
  EXPECT_EQ(
      R("{{ p|sort(attribute='age')|map(attribute='n')|join }} {{ p|map(attribute='zz', default='-')|join }}", people),
      "ba --");
  EXPECT_EQ(R("{{ {'b': 1, 'a': 2}|items }} {{ {'b': 1, 'a': 2}|dictsort }}"),
            "[[\"b\", 1], [\"a\", 2]] [[\"a\", 2], [\"b\", 1]]");
  EXPECT_FALSE(Err("{{ 1|nosuchfilter }}").ok());
  EXPECT_FALSE(Err("{{ undefined_thing|length }}").ok());
}

TEST(ChatTemplateJinja, ToJson) {
  const std::string ctx = R"({"v": {"name": "f", "args": {"x": [1, 2.5, "é\"q"], "y": null, "z": {}}, "t": true}})";
  EXPECT_EQ(R("{{ v|tojson }}", ctx),
            R"({"name": "f", "args": {"x": [1, 2.5, "é\"q"], "y": null, "z": {}}, "t": true})");
  EXPECT_EQ(R("{{ v.args|tojson(indent=2) }}", ctx),
            "{\n  \"x\": [\n    1,\n    2.5,\n    \"é\\\"q\"\n  ],\n  \"y\": null,\n  \"z\": {}\n}");
  EXPECT_EQ(R("{{ 'é\\n😀'|tojson(ensure_ascii=true) }}"), "\"\\u00e9\\n\\ud83d\\ude00\"");
  EXPECT_EQ(R("{{ {'b': 1, 'a': 2}|tojson(sort_keys=true, separators=(',', ':')) }}"), "{\"a\":2,\"b\":1}");
  EXPECT_EQ(R("{{ x|tojson }}"), "null");
}

TEST(ChatTemplateJinja, Statements) {
  EXPECT_EQ(R("{% if 0 %}a{% elif 1 %}b{% else %}c{% endif %}"), "b");
  EXPECT_EQ(R("{% for x in [1, 2, 3] %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}"
              "{{ loop.length }}{{ loop.revindex }};{% endfor %}"),
            "10truefalse33;21falsefalse32;32falsetrue31;");
  EXPECT_EQ(R("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{% for x in [1, 2, 3, 4] if x is even %}{{ x }}{% endfor %}"), "24");
  EXPECT_EQ(R("{% for x in [1, 2, 3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}"), "13");
  EXPECT_EQ(R("{% for x in [1, 2, 3] %}{{ x }}{% if x == 2 %}{% break %}{% endif %}{% endfor %}"), "1");
  EXPECT_EQ(R("{% for k in {'a': 1, 'b': 2} %}{{ k }}{% endfor %}"), "ab");
  EXPECT_EQ(R("{% set x = 'v' %}{{ x }}{% set a, b = [1, 2] %}{{ a }}{{ b }}"), "v12");
  EXPECT_EQ(R("{% set x %}captured {{ 1 + 1 }}{% endset %}[{{ x }}]"), "[captured 2]");
  EXPECT_EQ(R("{% set ns = namespace(n=0, found=false) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor %}"
              "{{ ns.n }} {{ ns.found }}"),
            "6 false");
  // A plain set inside a loop stays in the loop, as in Jinja.
  EXPECT_EQ(R("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(R("{{ range(3) }} {{ range(1, 7, 2) }} {{ range(3, 0, -1) }}"), "[0, 1, 2] [1, 3, 5] [3, 2, 1]");
  EXPECT_EQ(R("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', "
              "punct='?') }}"),
            "Hi A! Hi B?");
  EXPECT_EQ(R("{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}inner{% endcall %}"), "<inner>");
  EXPECT_EQ(R("{% filter upper %}shout {{ 'it' }}{% endfilter %}"), "SHOUT IT");
  EXPECT_EQ(R("a{# comment #}b{#- trimmed -#}  c"), "abc");
  EXPECT_EQ(R("{% raw %}{{ not rendered }}{% endraw %}"), "{{ not rendered }}");
}

TEST(ChatTemplateJinja, WhitespaceControl) {
  EXPECT_EQ(R("a  {{- 'b' -}}  c"), "abc");
  EXPECT_EQ(R("a \n {%- if true -%} \n b \n {%- endif -%} \n c"), "abc");
  // trim_blocks: the newline after a block tag goes; lstrip_blocks: indentation before it.
  EXPECT_EQ(R("{% if true %}\n    yes\n    {% endif %}\nend"), "    yes\nend");
  EXPECT_EQ(R("{% for x in [1, 2] %}\n  {{ x }}\n{% endfor %}\n"), "  1\n  2\n");
  // Expression tags are not trimmed; one trailing newline of the template is dropped.
  EXPECT_EQ(R("{{ 'a' }}\nb\n"), "a\nb");
}

TEST(ChatTemplateJinja, ParseErrorsHaveLineAndColumn) {
  auto s = Template::Parse("line one\n{% if x %}\n{{ x + }}\n{% endif %}").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("line 3"), std::string::npos) << s;
  EXPECT_NE(s.message().find("column"), std::string::npos) << s;
  EXPECT_NE(Template::Parse("{% if x %}never closed").status().message().find("unclosed {% if %}"), std::string::npos);
  EXPECT_NE(Template::Parse("{% frobnicate %}").status().message().find("unknown statement 'frobnicate'"),
            std::string::npos);
  EXPECT_FALSE(Template::Parse("{{ 'unterminated }}").ok());
  EXPECT_FALSE(Template::Parse("{{ x ").ok());
  EXPECT_FALSE(Template::Parse("{# no end").ok());
  EXPECT_FALSE(Template::Parse("{{ 'bad \\q escape' }}").ok());
  EXPECT_FALSE(Template::Parse("{% endif %}").ok());
  EXPECT_FALSE(Template::Parse("{{ a[] }}").ok());
  EXPECT_FALSE(Template::Parse("{% macro m(a=1, b) %}{% endmacro %}").ok());
}

TEST(ChatTemplateJinja, RuntimeErrors) {
  auto raised = Err("{{ raise_exception('Conversation roles must alternate') }}");
  EXPECT_EQ(raised.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(raised.message(), "Conversation roles must alternate");          // verbatim, for the client
  EXPECT_EQ(Err("{{ x + 1 }}").code(), absl::StatusCode::kInvalidArgument);  // undefined operand
  EXPECT_FALSE(Err("{{ none + 1 }}").ok());
  EXPECT_FALSE(Err("{{ 1 < 'a' }}").ok());
  EXPECT_FALSE(Err("{% for x in 5 %}{% endfor %}").ok());
  EXPECT_FALSE(Err("{% set d = {} %}{% set d.x = 1 %}").ok());  // only namespaces are mutable
  EXPECT_FALSE(Err("{{ 'abc'.nosuchmethod() }}").ok());
  EXPECT_FALSE(Err("{% break %}").ok());
  EXPECT_FALSE(Err("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}").ok());
}

TEST(ChatTemplateJinja, HostileTemplatesAreBounded) {
  jinja::RenderOptions small;
  small.limits.max_steps = 100000;
  small.limits.max_output_bytes = 1 << 20;
  // Unbounded recursion, exponential strings, huge ranges, nested loops, a cyclic namespace.
  EXPECT_FALSE(Err("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").ok());
  EXPECT_FALSE(Err("{% set ns = namespace(s='xx') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
                   "{}", small)
                   .ok());
  EXPECT_FALSE(Err("{{ range(1000000000)|length }}").ok());
  EXPECT_FALSE(Err("{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}{% endfor %}"
                   "{% endfor %}{% endfor %}",
                   "{}", small)
                   .ok());
  EXPECT_FALSE(Err("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns|tojson }}").ok());
  EXPECT_FALSE(Err("{% for i in range(100000) %}{{ 'abcdefghij' * 1 }}{% endfor %}", "{}", small).ok());
  // Deep nesting is a parse error, not a stack overflow.
  std::string deep = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  EXPECT_FALSE(Template::Parse(deep).ok());
  std::string deep_if;
  for (int i = 0; i < 500; ++i) deep_if += "{% if true %}";
  EXPECT_FALSE(Template::Parse(deep_if).ok());
}

TEST(ChatTemplateJinja, StrftimeNowUsesTheInjectedClock) {
  jinja::RenderOptions options;
  options.now = [] { return int64_t{1721995200}; };  // 2024-07-26 12:00 UTC
  setenv("TZ", "UTC", 1);
  tzset();
  auto r = RenderWith("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d %H:%M %B %%') }}", "{}", options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "26 Jul 2024|2024-07-26 12:00 July %");
}

// ---- ChatTemplate ------------------------------------------------------------------------
class ChatTemplateLoad : public ::testing::Test {
 protected:
  void Write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name, std::ios::binary) << text; }
  test_support::ScopedTempDir tmp_{"chat_template_test"};  // removed after each test
  const std::filesystem::path dir_{tmp_.path()};
};

const std::vector<ChatMessage> kChat = {{"system", "Be brief."}, {"user", "Hi!"}};

TEST_F(ChatTemplateLoad, StringTemplateAndAddedTokenObjects) {
  Write("tokenizer_config.json", R"({"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
    "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}{{ eos_token }}"})");
  auto t = ChatTemplate::Load(dir_.string());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_FALSE(t->is_default());
  EXPECT_EQ(*t->Render(kChat, true), "<s>[system]Be brief.[user]Hi![assistant]</s>");
  EXPECT_EQ(*t->Render(kChat, false), "<s>[system]Be brief.[user]Hi!</s>");
}

TEST_F(ChatTemplateLoad, NamedTemplateListTakesDefault) {
  Write(
      "tokenizer_config.json",
      R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D{{ messages|length }}"}]})");
  auto t = ChatTemplate::Load(dir_.string());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t->Render(kChat, true), "D2");
  Write("tokenizer_config.json", R"({"chat_template": [{"name": "tool_use", "template": "T"}]})");
  auto bad = ChatTemplate::Load(dir_.string());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("tool_use"), std::string::npos);
}

TEST_F(ChatTemplateLoad, NoTemplateGetsTheDocumentedDefault) {
  Write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  auto t = ChatTemplate::Load(dir_.string());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->is_default());
  EXPECT_EQ(*t->Render(kChat, true), "system: Be brief.\nuser: Hi!\nassistant:");
  EXPECT_EQ(*t->Render(kChat, false), "system: Be brief.\nuser: Hi!\n");
  std::filesystem::remove(dir_ / "tokenizer_config.json");
  auto bare = ChatTemplate::Load(dir_.string());
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_TRUE(bare->is_default());
}

TEST_F(ChatTemplateLoad, ChatTemplateJinjaFileBesideTheConfig) {
  Write("tokenizer_config.json", R"({"eos_token": "<|end|>"})");
  Write("chat_template.jinja", "{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}\n");
  auto t = ChatTemplate::Load(dir_.string());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t->Render(kChat, true), "Be brief.<|end|>Hi!<|end|>");
}

TEST_F(ChatTemplateLoad, OverrideFileReplacesTheTemplate) {
  Write("tokenizer_config.json", R"({"chat_template": "ORIGINAL"})");
  Write("override.jinja", "{{ messages[-1].content }}");
  auto t = ChatTemplate::Load(dir_.string(), (dir_ / "override.jinja").string());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t->Render(kChat, true), "Hi!");
  EXPECT_FALSE(ChatTemplate::Load(dir_.string(), (dir_ / "missing.jinja").string()).ok());
}

TEST_F(ChatTemplateLoad, ErrorsAreStatuses) {
  EXPECT_FALSE(ChatTemplate::Load((dir_ / "no_such_dir").string()).ok());
  Write("tokenizer_config.json", "{not json");
  EXPECT_FALSE(ChatTemplate::Load(dir_.string()).ok());
  Write("tokenizer_config.json", R"({"chat_template": "{% if %}"})");
  auto bad = ChatTemplate::Load(dir_.string());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("line 1"), std::string::npos) << bad.status();
  Write("tokenizer_config.json",
        R"({"chat_template": "{{ raise_exception('Only user and assistant roles are supported!') }}"})");
  auto raising = ChatTemplate::Load(dir_.string());
  ASSERT_TRUE(raising.ok());
  auto r = raising->Render(kChat, true);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "Only user and assistant roles are supported!");
}

// Real templates, checked against the prompts their model cards document.
std::string Fixture(const std::string& name) {
  return test_support::ReadFileOrFail(test_support::FixturePath("chat_templates/" + name));
}

TEST(ChatTemplateFixtures, Llama3Instruct) {
  auto t = ChatTemplate::FromString(Fixture("llama3-instruct.jinja"), "<|begin_of_text|>", "<|eot_id|>");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(
      *t->Render(kChat, true),
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplateFixtures, Qwen25AndMistralRoleOrder) {
  auto qwen = ChatTemplate::FromString(Fixture("qwen2.5-instruct.jinja"), "", "<|im_end|>");
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  EXPECT_EQ(*qwen->Render({{"user", "Hi!"}}, true),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n");
  auto mistral = ChatTemplate::FromString(Fixture("mistral-instruct-v0.1.jinja"), "<s>", "</s>");
  ASSERT_TRUE(mistral.ok()) << mistral.status();
  EXPECT_EQ(*mistral->Render({{"user", "a"}, {"assistant", "b"}, {"user", "c"}}, true),
            "<s>[INST] a [/INST]b</s> [INST] c [/INST]");
  auto bad = mistral->Render({{"assistant", "b"}}, true);
  EXPECT_EQ(bad.status().message(), "Conversation roles must alternate user/assistant/user/assistant/...");
}

TEST(ChatTemplateFixtures, EveryFixtureParses) {
  for (const auto& entry : std::filesystem::directory_iterator(test_support::FixturePath("chat_templates"))) {
    if (entry.path().extension() != ".jinja") continue;
    auto t = ChatTemplate::FromString(Fixture(entry.path().filename().string()), "<s>", "</s>");
    EXPECT_TRUE(t.ok()) << entry.path() << ": " << t.status();
  }
}

// Mangled real templates must fail cleanly or render, never crash or hang.
TEST(ChatTemplateFixtures, MutatedTemplatesNeverCrash) {
  const std::vector<ChatMessage> chat = {{"system", "s"}, {"user", "u"}, {"assistant", "a"}, {"user", "v"}};
  const std::string pieces[] = {"{%", "%}",       "{{", "}}", "{#", "#}", "-",      "(",     ")",
                                "[",  "]",        "'",  "\"", "|",  ".",  "endfor", "endif", "loop",
                                "ns", "messages", ":",  ",",  "*",  "**", "~",      "is",    "not"};
  uint64_t state = 12345;
  auto next = [&state] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<size_t>(state >> 33);
  };
  int rendered = 0;
  for (const char* name :
       {"qwen3.jinja", "llama3.1-instruct.jinja", "mistral-instruct-v0.3.jinja", "llama2-chat.jinja"}) {
    const std::string original = Fixture(name);
    ASSERT_FALSE(original.empty()) << name;
    for (int iter = 0; iter < 300; ++iter) {
      std::string t = original;
      for (int k = 0, n = 1 + static_cast<int>(next() % 4); k < n; ++k) {
        const size_t at = next() % (t.size() + 1);
        switch (next() % 3) {
          case 0: t.erase(at, 1 + next() % 8); break;
          case 1: t.insert(at, pieces[next() % std::size(pieces)]); break;
          default: t.insert(at, t.substr(next() % t.size(), next() % 40)); break;
        }
      }
      auto tmpl = ChatTemplate::FromString(t, "<s>", "</s>");
      if (!tmpl.ok()) continue;
      auto r = tmpl->Render(chat, iter % 2 == 0);
      if (r.ok()) ++rendered;
    }
  }
  EXPECT_GT(rendered, 0);
}

}  // namespace
}  // namespace accullm::text
