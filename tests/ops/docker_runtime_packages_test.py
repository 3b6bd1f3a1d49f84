#!/usr/bin/env python3
"""The Dockerfile's runtime stage installs exactly the Debian packages that own the shared
libraries the built binary links (ldd + dpkg -S) plus openmpi-bin, and its mpi stage adds
exactly openssh-client and openssh-server.

Libraries that no Debian package owns are allowed only under /usr/local/cuda*: the
development build links CUDA when the toolkit is there; the image's build stage has none
(a CPU image). Anything else unowned fails: the image could not provide it.
Usage: docker_runtime_packages_test.py REPO_ROOT BINARY
"""
import os
import re
import subprocess
import sys

root, binary = sys.argv[1], sys.argv[2]
errors = []


def stage_packages(marker):
    text = open(os.path.join(root, "Dockerfile"), encoding="utf-8").read()
    m = re.search(rf"# BEGIN {marker}\n(.*?)# END {marker}", text, re.S)
    if not m:
        sys.exit(f"FAIL: Dockerfile has no '# BEGIN {marker}' ... '# END {marker}' block")
    block = m.group(1).replace("\\\n", " ")
    install = re.search(r"apt-get install -y --no-install-recommends((?:\s+[a-z0-9][a-z0-9.+-]*)+)", block)
    if not install:
        sys.exit(f"FAIL: no `apt-get install -y --no-install-recommends` in {marker}")
    return set(install.group(1).split())


def owner(path):
    # dpkg knows the path the package shipped (/lib/... or /usr/lib/... on merged-/usr systems).
    candidates = [path, os.path.realpath(path)]
    for p in list(candidates):
        candidates.append(p[4:] if p.startswith("/usr/") else "/usr" + p)
    for p in candidates:
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            line = [l for l in r.stdout.splitlines() if not l.startswith("diversion")][0]
            return line.split(":")[0].split(",")[0].strip()
    return None


ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
libs = sorted(set(re.findall(r"=>\s+(/\S+)", ldd)))
if not libs:
    sys.exit(f"FAIL: ldd found no shared libraries in {binary}")
needed = set()
for lib in libs:
    pkg = owner(lib)
    if pkg:
        needed.add(pkg)
    elif os.path.realpath(lib).startswith("/usr/local/cuda"):
        print(f"note: {lib} belongs to the CUDA toolkit (not in the CPU image's build stage)")
    else:
        errors.append(f"{lib}: no Debian package owns it; the runtime image could not provide it")
needed.add("openmpi-bin")
listed = stage_packages("runtime-packages")
for p in sorted(needed - listed):
    errors.append(f"runtime stage lacks {p} (owns a library the binary links, or the MPI launcher)")
for p in sorted(listed - needed):
    errors.append(f"runtime stage installs {p}, which the binary does not need")
mpi = stage_packages("mpi-packages")
if mpi != {"openssh-client", "openssh-server"}:
    errors.append(f"mpi stage installs {sorted(mpi)}, expected exactly openssh-client, openssh-server")
print(f"{len(libs)} libraries -> {len(needed)} packages: {' '.join(sorted(needed))}")
for e in errors:
    print("FAIL:", e)
sys.exit(1 if errors else 0)
