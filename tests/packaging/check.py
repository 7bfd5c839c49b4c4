"""Checks of deploy/: the rootfs the Dockerfile copies, the Kubernetes manifests against the
real binary (flags, ports, paths, the config itself), and the HAProxy example."""

import pathlib
import re
import subprocess
import sys

import yaml

root, work, binary, haproxy = (pathlib.Path(arg) for arg in sys.argv[1:5])
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"  ok    {name}")
    else:
        failed += 1
        print(f"  FAIL  {name} {detail}")


def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True)


# The rootfs: the binary runs, an unprivileged user owns the data folder.
rootfs = work / "rootfs"
version = run(binary, "--version")
check("the image's binary runs", version.returncode == 0, version.stderr)
passwd = (rootfs / "etc/passwd").read_text()
check("an unprivileged user 10001", ":10001:10001:" in passwd, passwd)
check("a data folder to mount", (rootfs / "var/lib/portcullis").is_dir())

dockerfile = (root / "deploy/container/Dockerfile").read_text()
check("the Dockerfile builds with the same script",
      "deploy/container/build-rootfs.sh /rootfs --release" in dockerfile)
check("the Dockerfile runs as that user", "USER 10001:10001" in dockerfile)
check("the Dockerfile is multi-stage", dockerfile.count("\nFROM ") + dockerfile.startswith("FROM ") >= 2)
cmd = re.search(r'CMD \[(.*)\]', dockerfile)
serve_help = run(binary, "serve", "--help").stdout
for flag in re.findall(r'"(--[a-z-]+)"', cmd.group(1) if cmd else ""):
    check(f"Dockerfile's {flag} is a serve flag", flag in serve_help)

# The manifests.
docs = [d for d in yaml.safe_load_all((root / "deploy/kubernetes/portcullis.yaml").read_text()) if d]
kinds = {d["kind"]: d for d in docs}
for kind in ["Secret", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]:
    check(f"a {kind}", kind in kinds)
deployment = kinds["Deployment"]
pod = deployment["spec"]["template"]["spec"]
container = pod["containers"][0]
args = container["args"]
for flag in [a for a in args if a.startswith("--")]:
    check(f"container flag {flag} exists", flag in serve_help)
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
for probe, path in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")]:
    get = container[probe]["httpGet"]
    check(f"{probe} asks {path} on a declared port", get["path"] == path and get["port"] in ports, get)
check("read-only root filesystem", container["securityContext"]["readOnlyRootFilesystem"] is True)
check("runs as non-root", pod["securityContext"]["runAsNonRoot"] is True)
env = {e["name"]: e for e in container.get("env", [])}
check("each replica is named after its pod",
      env.get("PORTCULLIS_REPLICA", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name")
labels = deployment["spec"]["template"]["metadata"]["labels"]
for doc in docs:
    selector = doc.get("spec", {}).get("selector")
    if doc["kind"] == "Service":
        check(f"Service {doc['metadata']['name']} selects the pods", selector.items() <= labels.items())
    if doc["kind"] == "PodDisruptionBudget":
        check("the budget selects the pods", selector["matchLabels"].items() <= labels.items())

# The config, laid out as the pod mounts it, passes `portcullis check`; its ports are the
# container's.
mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
volumes = {v["name"]: v for v in pod["volumes"]}
for name, volume in volumes.items():
    source = volume.get("secret", {}).get("secretName") or volume.get("configMap", {}).get("name")
    if not source:
        continue
    data = next(d for d in docs if d["metadata"]["name"] == source and d["kind"] in ("Secret", "ConfigMap"))
    folder = work / mounts[name].lstrip("/")
    folder.mkdir(parents=True, exist_ok=True)
    for file, text in (data.get("stringData") or data.get("data") or {}).items():
        (folder / file).write_text(text)
config = args[args.index("--config") + 1]
checked = run(binary, "check", "--config", work / config.lstrip("/"))
check("the manifests' config passes `portcullis check`", checked.returncode == 0, checked.stderr + checked.stdout)
text = (work / config.lstrip("/")).read_text()
check("the admin listener is the probes' port", f':{ports["admin"]}"' in text)
check("the MCP listener is the container's port", f':{ports["mcp"]}"' in text)
grace = pod["terminationGracePeriodSeconds"]
drain = int(re.search(r'drain_delay = "(\d+)s"', text).group(1))
shutdown = int(re.search(r'shutdown_grace = "(\d+)s"', text).group(1))
check("the pod may take drain_delay + shutdown_grace to stop", grace >= drain + shutdown, (grace, drain, shutdown))

# The HAProxy example is a valid configuration (with a throwaway certificate in place).
pem = work / "mcp.pem"
made = run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=mcp.example.com",
           "-keyout", work / "key.pem", "-out", work / "cert.pem", "-days", "1")
if made.returncode == 0:
    pem.write_text((work / "cert.pem").read_text() + (work / "key.pem").read_text())
    for name in ["haproxy.cfg", "haproxy-kubernetes.cfg"]:
        example = (root / "deploy/haproxy" / name).read_text().replace("/etc/haproxy/mcp.pem", str(pem))
        (work / name).write_text(example)
        valid = run(haproxy, "-c", "-f", work / name)
        check(f"the HAProxy example {name} is valid", valid.returncode == 0, valid.stderr + valid.stdout)
    service = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    check("the Kubernetes example finds replicas by a Service of the manifests",
          any(f"{name}.default.svc" in (root / "deploy/haproxy/haproxy-kubernetes.cfg").read_text()
              for name in service))
else:
    check("openssl makes a test certificate", False, made.stderr)

print(f"packaging interop: {passed} passed, {failed} failed")
sys.exit(0 if failed == 0 and passed > 0 else 1)
