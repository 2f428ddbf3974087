#!/usr/bin/env python3
"""Self-test of kube_emulator.py, over plain HTTP and through kubectl.

Run: python3 tests/support/test_kube_emulator.py
Prints one line per check and ``N passed, M failed`` last; exit 1 on failure.
Needs kubectl on PATH for the kubectl checks (they fail without it). Uses the
CRD in crds/instanceprofilebinding.yaml when it exists and PyYAML is
importable, else a minimal CRD of its own (JSON).
"""

import http.client
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "kube_emulator.py")
REPO = os.path.dirname(os.path.dirname(HERE))
CRD_FILE = os.path.join(REPO, "crds", "instanceprofilebinding.yaml")

GROUP, VERSION, PLURAL, KIND = "iam.instanceprofile.dev", "v1alpha1", "instanceprofilebindings", "InstanceProfileBinding"
API = f"{GROUP}/{VERSION}"
NS = "e2e"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"

MINIMAL_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "names": {"kind": KIND, "plural": PLURAL, "singular": "instanceprofilebinding", "shortNames": ["ipb"]},
        "scope": "Namespaced",
        "versions": [{
            "name": VERSION, "served": True, "storage": True,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Role", "type": "string", "jsonPath": ".spec.role"},
                {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "required": ["role", "instances"], "properties": {
                    "role": {"type": "string"},
                    "instances": {"type": "object", "properties": {"ids": {"type": "array", "items": {"type": "string"}}}},
                }},
                "status": {"type": "object", "nullable": True, "properties": {
                    "conditions": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    "instanceSummary": {"type": "string", "nullable": True},
                    "observedGeneration": {"type": "integer", "nullable": True},
                }},
            }}},
        }],
    },
}


class Failure(AssertionError):
    pass


def check(cond, msg="check failed"):
    if not cond:
        raise Failure(msg)


def ipb(ns=NS, name=None, sub=None, query=""):
    p = f"/apis/{API}/namespaces/{ns}/{PLURAL}"
    if name:
        p += f"/{name}"
    if sub:
        p += f"/{sub}"
    return p + (f"?{query}" if query else "")


def binding(name, role="role-a", labels=None, ns=NS):
    md = {"name": name, "namespace": ns}
    if labels:
        md["labels"] = labels
    return {"apiVersion": API, "kind": KIND, "metadata": md,
            "spec": {"role": role, "instances": {"ids": ["i-0123456789abcdef0"]}}}


def ready_status(reason="Reconciled", status="True"):
    return {"apiVersion": API, "kind": KIND, "status": {
        "conditions": [{"type": "Ready", "status": status, "reason": reason, "message": "m",
                        "lastTransitionTime": "2025-01-01T00:00:00Z"}],
        "instanceSummary": "1/1"}}


class Env:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="kube-emulator-test-")
        self.kubeconfig = os.path.join(self.tmp, "kubeconfig")
        self.cache = os.path.join(self.tmp, "kubectl-cache")
        crd = CRD_FILE
        self.crd_note = f"CRD from {CRD_FILE}"
        try:
            import yaml  # noqa: F401
            self.have_yaml = True
        except ImportError:
            self.have_yaml = False
        if not (os.path.exists(CRD_FILE) and self.have_yaml):
            crd = os.path.join(self.tmp, "crd.json")
            with open(crd, "w", encoding="utf-8") as f:
                json.dump(MINIMAL_CRD, f)
            self.crd_note = "minimal built-in CRD (no crds/ file or no PyYAML)"
        self.proc = subprocess.Popen(
            [sys.executable, EMULATOR, "--listen", "127.0.0.1:0", "--kubeconfig", self.kubeconfig, "--crd", crd],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        r, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if r else ""
        m = re.fullmatch(r"READY (\d+)\n", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"emulator did not start: {line!r} {self.proc.stderr.read().decode()}")
        self.ready_line = line
        self.port = int(m.group(1))
        self.kubectl_bin = shutil.which("kubectl")

    # -- HTTP ---------------------------------------------------------------
    def req(self, method, path, body=None, ctype="application/json", accept=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            hdrs = dict(headers or {})
            data = None
            if body is not None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                hdrs["Content-Type"] = ctype
            if accept:
                hdrs["Accept"] = accept
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode()
            return resp.status, parsed, resp
        finally:
            conn.close()

    def ok(self, method, path, body=None, ctype="application/json", accept=None, expect=(200, 201)):
        status, obj, _ = self.req(method, path, body, ctype, accept)
        expect = (expect,) if isinstance(expect, int) else expect
        check(status in expect, f"{method} {path}: HTTP {status} (want {expect}): {obj}")
        return obj

    def fail(self, method, path, body=None, ctype="application/json", code=None, reason=None):
        status, obj, _ = self.req(method, path, body, ctype)
        check(status == code, f"{method} {path}: HTTP {status}, want {code}: {obj}")
        check(isinstance(obj, dict) and obj.get("kind") == "Status" and obj.get("status") == "Failure"
              and obj.get("code") == code and obj.get("apiVersion") == "v1", f"not a Failure Status: {obj}")
        if reason:
            check(obj.get("reason") == reason, f"reason {obj.get('reason')!r}, want {reason!r}: {obj}")
        return obj

    def apply(self, path, obj, manager="e2e-ctrl", force=True, expect=(200, 201)):
        q = f"fieldManager={manager}" + ("&force=true" if force else "")
        return self.ok("PATCH", f"{path}?{q}", obj, "application/apply-patch+yaml", expect=expect)

    def jpatch(self, path, ops, expect=200):
        return self.ok("PATCH", path, ops, "application/json-patch+json", expect=expect)

    def mpatch(self, path, patch, expect=200):
        return self.ok("PATCH", path, patch, "application/merge-patch+json", expect=expect)

    def watch(self, path, query):
        return Watch(self.port, f"{path}?watch=true&{query}")

    # -- kubectl --------------------------------------------------------------
    def kubectl(self, *args, check_rc=True, input_text=None, timeout=30):
        check(self.kubectl_bin is not None, "kubectl is not on PATH")
        cmd = [self.kubectl_bin, "--kubeconfig", self.kubeconfig, "--cache-dir", self.cache, *args]
        p = subprocess.run(cmd, capture_output=True, text=True, input=input_text, timeout=timeout)
        if check_rc:
            check(p.returncode == 0, f"{' '.join(args)} -> rc {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        return p.stdout if check_rc else p

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Watch:
    def __init__(self, port, path):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.conn.request("GET", path)
        self.resp = self.conn.getresponse()
        if self.resp.status != 200:
            raise Failure(f"watch {path}: HTTP {self.resp.status} {self.resp.read()!r}")
        check(self.resp.getheader("Transfer-Encoding") == "chunked", "watch response is not chunked")
        self.closed = False

    def next(self, timeout=5.0):
        """Next event, or None when the server closed the stream."""
        self.conn.sock.settimeout(timeout)
        line = self.resp.readline()
        if not line:
            self.closed = True
            return None
        return json.loads(line)

    def take(self, n, timeout=5.0, skip_bookmarks=True):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            check(left > 0, f"timed out waiting for {n} events, got {[(e['type']) for e in out]}")
            ev = self.next(left)
            check(ev is not None, f"stream closed after {[(e['type']) for e in out]}")
            if skip_bookmarks and ev["type"] == "BOOKMARK":
                continue
            out.append(ev)
        return out

    def close(self):
        self.conn.close()


# ---------------------------------------------------------------------------
# checks (they run in order against one emulator)

def t_startup_and_discovery(env):
    check(env.ready_line == f"READY {env.port}\n")
    with open(env.kubeconfig, encoding="utf-8") as f:
        kc = f.read()
    check(f"server: http://127.0.0.1:{env.port}" in kc and "current-context: emulator" in kc
          and "namespace: default" in kc, kc)
    for p in ("/healthz", "/readyz", "/livez"):
        check(env.ok("GET", p) == "ok", p)
    check(env.ok("GET", "/version")["gitVersion"].startswith("v1.33"))
    check(env.ok("GET", "/api")["versions"] == ["v1"])
    groups = {g["name"]: g for g in env.ok("GET", "/apis")["groups"]}
    for g in (GROUP, "coordination.k8s.io", "events.k8s.io", "apiextensions.k8s.io"):
        check(g in groups, f"group {g} missing from /apis")
    check(groups[GROUP]["preferredVersion"]["version"] == VERSION)
    res = {r["name"]: r for r in env.ok("GET", f"/apis/{API}")["resources"]}
    check(res[PLURAL]["shortNames"] == ["ipb"] and res[PLURAL]["namespaced"] is True and res[PLURAL]["kind"] == KIND)
    check("watch" in res[PLURAL]["verbs"] and f"{PLURAL}/status" in res)
    core = {r["name"]: r for r in env.ok("GET", "/api/v1")["resources"]}
    check(core["namespaces"]["namespaced"] is False and core["events"]["namespaced"] is True)
    agg = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    status, _, _ = env.req("GET", "/apis", accept=agg)
    check(status == 406, f"aggregated-only discovery should be refused, got {status}")
    status, obj, resp = env.req("GET", "/apis", accept=agg + ",application/json")
    check(status == 200 and obj["kind"] == "APIGroupList" and resp.getheader("Content-Type") == "application/json")


def t_crd_established(env):
    crd = env.ok("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{PLURAL}.{GROUP}")
    conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    check(conds.get("Established") == "True" and conds.get("NamesAccepted") == "True", conds)
    env.columns = [c for c in crd["spec"]["versions"][0].get("additionalPrinterColumns", [])]


def t_namespace_required(env):
    env.fail("POST", ipb("nope"), binding("x", ns="nope"), code=404, reason="NotFound")
    out = env.kubectl("create", "namespace", NS)
    check(f"namespace/{NS} created" in out, out)
    ns = env.ok("GET", f"/api/v1/namespaces/{NS}")
    check(ns["status"]["phase"] == "Active" and ns["metadata"]["resourceVersion"])


def t_kubectl_apply_and_printer_columns(env):
    path = os.path.join(env.tmp, "web.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"apiVersion: {API}\nkind: {KIND}\nmetadata:\n  name: web\n  namespace: {NS}\n"
                f"  labels:\n    app: web\nspec:\n  role: web-role\n  instances:\n    ids: [i-0123456789abcdef0]\n")
    out = env.kubectl("apply", "-f", path)
    check(f"{KIND.lower()}.{GROUP}/web created" in out, out)
    out = env.kubectl("apply", "-f", path)
    check("unchanged" in out, out)
    env.apply(ipb(name="web", sub="status"), ready_status())
    out = env.kubectl("get", "ipb", "-A")
    lines = out.splitlines()
    header = lines[0].split()
    want = ["NAMESPACE", "NAME"] + [c["name"].upper() for c in env.columns if not c.get("priority")]
    check(header == want, f"header {header}, want {want}")
    row = [ln for ln in lines[1:] if ln.split()[:2] == [NS, "web"]]
    check(row, out)
    cells = row[0].split()
    check("web-role" in cells and "True" in cells, out)
    check(re.fullmatch(r"\d+s", cells[-1]), f"age cell {cells[-1]!r}")
    out = env.kubectl("get", f"{PLURAL}.{GROUP}", "-n", NS, "web", "-o", "jsonpath={.spec.role}")
    check(out == "web-role", out)


def t_table_over_http(env):
    table = env.ok("GET", ipb(), accept=TABLE)
    check(table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1")
    names = [c["name"] for c in table["columnDefinitions"]]
    check(names == ["Name"] + [c["name"] for c in env.columns], names)
    row = [r for r in table["rows"] if r["cells"][0] == "web"][0]
    check(row["object"]["kind"] == "PartialObjectMetadata" and row["object"]["metadata"]["namespace"] == NS)
    for i, c in enumerate(env.columns, start=1):
        if c["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status':
            check(row["cells"][i] == "True", row)
        if c["type"] == "date" and c["jsonPath"] == ".metadata.creationTimestamp":
            check(re.fullmatch(r"\d+s", row["cells"][i]), row)
        elif c["type"] == "date" and row["cells"][i] is not None:
            # Another date column (e.g. when Ready last changed) reads the
            # object's own timestamps, which the test wrote long ago.
            check(re.fullmatch(r"\d+[smhdy]", row["cells"][i]), row)
    single = env.ok("GET", ipb(name="web", query="includeObject=Object"), accept=TABLE)
    check(len(single["rows"]) == 1 and single["rows"][0]["object"]["kind"] == KIND)
    pom = env.ok("GET", ipb(), accept="application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
    check(pom["kind"] == "PartialObjectMetadataList" and any(i["metadata"]["name"] == "web" for i in pom["items"]))


def t_list_paging(env):
    """limit/continue: pages in name order, one resourceVersion for the whole
    list, remainingItemCount, a bad token is 400, no limit is one page."""
    names = [f"pg{i:02d}" for i in range(7)]
    for n in names:
        env.ok("POST", ipb(), binding(n), expect=201)
    whole = [i["metadata"]["name"] for i in env.ok("GET", ipb())["items"] if i["metadata"]["name"].startswith("pg")]
    check(whole == names, whole)
    seen, token, rvs, pages = [], None, set(), 0
    while True:
        q = "limit=3" + (f"&continue={token}" if token else "")
        page = env.ok("GET", ipb(query=q))
        pages += 1
        check(len(page["items"]) <= 3, len(page["items"]))
        rvs.add(page["metadata"]["resourceVersion"])
        seen += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            check("remainingItemCount" not in page["metadata"], page["metadata"])
            break
        check(page["metadata"]["remainingItemCount"] > 0, page["metadata"])
        env.ok("POST", ipb(), binding(f"zz-late{pages}"), expect=201)   # a write between pages
    check([n for n in seen if n.startswith("pg")] == names, seen)
    check(len(rvs) == 1, rvs)
    check(len(seen) == len(set(seen)), seen)
    env.fail("GET", ipb(query="limit=2&continue=not-a-token"), code=400, reason="BadRequest")
    table = env.ok("GET", ipb(query="limit=2"), accept=TABLE)
    check(len(table["rows"]) == 2 and table["metadata"].get("continue"), table["metadata"])
    for n in names + [f"zz-late{k}" for k in range(1, pages)]:
        env.ok("DELETE", ipb(name=n))


def t_watch_order_and_resume(env):
    lst = env.ok("GET", ipb())
    check(lst["kind"] == f"{KIND}List" and "continue" not in lst["metadata"])
    rv0 = lst["metadata"]["resourceVersion"]
    w = env.watch(ipb(), f"resourceVersion={rv0}&timeoutSeconds=10")
    created = env.ok("POST", ipb(), binding("w1"), expect=201)
    env.apply(ipb(name="w1", sub="status"), ready_status())
    env.ok("DELETE", ipb(name="w1"))
    evs = w.take(3)
    w.close()
    check([e["type"] for e in evs] == ["ADDED", "MODIFIED", "DELETED"], [e["type"] for e in evs])
    check(all(e["object"]["metadata"]["name"] == "w1" for e in evs))
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
    check(rvs == sorted(rvs) and len(set(rvs)) == 3 and rvs[0] == int(created["metadata"]["resourceVersion"]), rvs)
    w2 = env.watch(ipb(), f"resourceVersion={rv0}&timeoutSeconds=10")   # resume from an old RV
    evs2 = w2.take(3)
    w2.close()
    check([(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in evs2]
          == [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in evs])
    w3 = env.watch(ipb(), f"resourceVersion={rvs[0]}&timeoutSeconds=10")
    check([e["type"] for e in w3.take(2)] == ["MODIFIED", "DELETED"])
    w3.close()
    w4 = env.watch(f"/apis/{API}/{PLURAL}", "resourceVersion=0&timeoutSeconds=10")  # all namespaces
    first = w4.take(1)[0]
    w4.close()
    check(first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "web", first)


def t_watch_bookmarks_timeout_initial_events(env):
    rv = env.ok("GET", ipb())["metadata"]["resourceVersion"]
    t0 = time.monotonic()
    w = env.watch(ipb(), f"resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=2")
    ev = w.next(3)
    check(ev and ev["type"] == "BOOKMARK", ev)
    obj = ev["object"]
    check(obj["kind"] == KIND and obj["apiVersion"] == API and set(obj) == {"kind", "apiVersion", "metadata"}
          and list(obj["metadata"]) == ["resourceVersion"], obj)
    while w.next(4) is not None:
        pass
    check(w.closed and time.monotonic() - t0 < 3.5, "stream did not close after timeoutSeconds")
    w.close()
    w = env.watch(ipb(), "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
                          "&resourceVersion=&timeoutSeconds=5")
    seen = []
    while True:
        ev = w.next(3)
        check(ev is not None, "stream closed early")
        seen.append(ev["type"])
        if ev["type"] == "BOOKMARK":
            break
    w.close()
    check("ADDED" in seen and ev["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}, ev)


def t_watch_label_selector_transitions(env):
    rv = env.ok("GET", ipb())["metadata"]["resourceVersion"]
    w = env.watch(ipb(), f"resourceVersion={rv}&labelSelector=tier%3Dgold&timeoutSeconds=10")
    env.ok("POST", ipb(), binding("sel", labels={"tier": "gold"}))
    env.mpatch(ipb(name="sel"), {"metadata": {"labels": {"tier": "silver"}}})
    env.mpatch(ipb(name="sel"), {"metadata": {"labels": {"tier": "gold"}}})
    env.ok("POST", ipb(), binding("other", labels={"tier": "silver"}))
    env.ok("DELETE", ipb(name="sel"))
    evs = w.take(4)
    w.close()
    check([e["type"] for e in evs] == ["ADDED", "DELETED", "ADDED", "DELETED"], [e["type"] for e in evs])
    env.ok("DELETE", ipb(name="other"))


def t_put_stale_rv_conflict(env):
    cur = env.ok("GET", ipb(name="web"))
    stale = json.loads(json.dumps(cur))
    cur["spec"]["role"] = "web-role-2"
    new = env.ok("PUT", ipb(name="web"), cur, expect=200)
    check(int(new["metadata"]["resourceVersion"]) > int(stale["metadata"]["resourceVersion"]))
    check(new["metadata"]["generation"] == stale["metadata"]["generation"] + 1)
    stale["spec"]["role"] = "lost-update"
    st = env.fail("PUT", ipb(name="web"), stale, code=409, reason="Conflict")
    check(st["details"] == {"name": "web", "group": GROUP, "kind": PLURAL}, st)
    del stale["metadata"]["resourceVersion"]
    env.fail("PUT", ipb(name="web"), stale, code=422, reason="Invalid")
    env.fail("PUT", ipb(name="ghost"), binding("ghost"), code=404, reason="NotFound")
    env.fail("PATCH", ipb(name="web"), {"metadata": {"resourceVersion": "1"}, "spec": {"role": "x"}},
             "application/merge-patch+json", code=409, reason="Conflict")


def t_json_patch_finalizer(env):
    env.ok("POST", ipb(), binding("fin"))
    add_first = [{"op": "test", "path": "/metadata/finalizers", "value": None},
                 {"op": "add", "path": "/metadata/finalizers", "value": ["a.dev/cleanup"]}]
    obj = env.jpatch(ipb(name="fin"), add_first)
    check(obj["metadata"]["finalizers"] == ["a.dev/cleanup"])
    env.fail("PATCH", ipb(name="fin"), add_first, "application/json-patch+json", code=422, reason="Invalid")
    obj = env.jpatch(ipb(name="fin"), [{"op": "test", "path": "/metadata/finalizers", "value": ["a.dev/cleanup"]},
                                       {"op": "add", "path": "/metadata/finalizers/-", "value": "b.dev/x"}])
    check(obj["metadata"]["finalizers"] == ["a.dev/cleanup", "b.dev/x"])
    env.fail("PATCH", ipb(name="fin"), [{"op": "test", "path": "/metadata/finalizers", "value": ["a.dev/cleanup"]},
                                        {"op": "add", "path": "/metadata/finalizers/-", "value": "c"}],
             "application/json-patch+json", code=422)
    obj = env.jpatch(ipb(name="fin"), [{"op": "test", "path": "/metadata/finalizers/1", "value": "b.dev/x"},
                                       {"op": "remove", "path": "/metadata/finalizers/1"}])
    check(obj["metadata"]["finalizers"] == ["a.dev/cleanup"])
    env.fail("PATCH", ipb(name="fin"), {"op": "add"}, "application/json-patch+json", code=400, reason="BadRequest")
    env.fail("PATCH", ipb(name="fin", query="force=true"), [], "application/json-patch+json", code=422, reason="Invalid")
    env.fail("PATCH", ipb(name="fin"), [{"op": "remove", "path": "/spec/nothing"}], "application/json-patch+json",
             code=422)


def t_generation_and_status_subresource(env):
    before = env.ok("GET", ipb(name="fin"))
    gen, rv = before["metadata"]["generation"], before["metadata"]["resourceVersion"]
    after = env.apply(ipb(name="fin", sub="status"), ready_status("First"))
    check(after["metadata"]["generation"] == gen and after["metadata"]["resourceVersion"] != rv)
    check(after["status"]["conditions"][0]["reason"] == "First")
    again = env.apply(ipb(name="fin", sub="status"), ready_status("First"))
    check(again["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"], "no-op apply must not write")
    lab = env.mpatch(ipb(name="fin"), {"metadata": {"labels": {"x": "y"}}})
    check(lab["metadata"]["generation"] == gen)
    spec = env.mpatch(ipb(name="fin"), {"spec": {"role": "changed"}})
    check(spec["metadata"]["generation"] == gen + 1)
    # the main resource ignores status, /status ignores everything else
    body = json.loads(json.dumps(spec))
    body["status"]["instanceSummary"] = "ignored"
    body["spec"]["role"] = "changed-again"
    main = env.ok("PUT", ipb(name="fin"), body)
    check(main["status"]["instanceSummary"] == "1/1" and main["spec"]["role"] == "changed-again")
    check(main["metadata"]["generation"] == gen + 2)
    body = json.loads(json.dumps(main))
    body["status"]["instanceSummary"] = "2/2"
    body["spec"]["role"] = "ignored"
    st = env.ok("PUT", ipb(name="fin", sub="status"), body)
    check(st["status"]["instanceSummary"] == "2/2" and st["spec"]["role"] == "changed-again")
    check(st["metadata"]["generation"] == gen + 2)
    crt = env.ok("POST", ipb(), {**binding("st-on-create"), "status": {"instanceSummary": "x"}})
    check("status" not in crt or "instanceSummary" not in crt["status"], crt)
    env.ok("DELETE", ipb(name="st-on-create"))


def t_server_side_apply(env):
    env.fail("PATCH", ipb(name="ssa"), binding("ssa"), "application/apply-patch+yaml", code=422, reason="Invalid")
    env.fail("PATCH", ipb(name="ssa", sub="status", query="fieldManager=m"), ready_status(),
             "application/apply-patch+yaml", code=404)
    obj = binding("ssa", labels={"a": "1", "b": "2"})
    created = env.apply(ipb(name="ssa"), obj, manager="owner", force=False, expect=201)
    check(created["metadata"]["labels"] == {"a": "1", "b": "2"} and created["metadata"]["generation"] == 1)
    obj["metadata"]["labels"] = {"a": "1"}
    updated = env.apply(ipb(name="ssa"), obj, manager="owner", force=False, expect=200)
    check(updated["metadata"]["labels"] == {"a": "1"}, "a field the manager stopped applying must go")
    other = binding("ssa", role="someone-else")
    del other["spec"]["instances"]
    st = env.fail("PATCH", ipb(name="ssa", query="fieldManager=intruder"), other,
                  "application/apply-patch+yaml", code=409, reason="Conflict")
    check("intruder" not in st["message"] and "owner" in st["message"], st["message"])
    forced = env.apply(ipb(name="ssa"), other, manager="intruder", force=True, expect=200)
    check(forced["spec"]["role"] == "someone-else" and forced["spec"]["instances"]["ids"])
    managers = {(m["manager"], m["operation"]) for m in forced["metadata"]["managedFields"]}
    check(("owner", "Apply") in managers and ("intruder", "Apply") in managers, managers)
    yaml_body = f"apiVersion: {API}\nkind: {KIND}\nmetadata:\n  name: ssa\nstatus:\n  instanceSummary: '3/3'\n"
    if env.have_yaml:
        st = env.ok("PATCH", ipb(name="ssa", sub="status", query="fieldManager=ctrl&force=true"), yaml_body,
                    "application/apply-patch+yaml")
        check(st["status"]["instanceSummary"] == "3/3")
    else:  # the emulator runs with the same interpreter, so it has no PyYAML either
        env.fail("PATCH", ipb(name="ssa", sub="status", query="fieldManager=ctrl&force=true"), yaml_body,
                 "application/apply-patch+yaml", code=400, reason="BadRequest")
    # Conditions are a list map keyed by type: a type the manager stops
    # applying goes whole (it once left a keyless remnant that failed validation).
    def conds(*types):
        return {"apiVersion": API, "kind": KIND, "status": {"conditions": [
            {"type": t, "status": "True", "reason": "R", "message": "m",
             "lastTransitionTime": "2026-01-01T00:00:00Z"} for t in types]}}
    env.apply(ipb(name="ssa", sub="status"), conds("Ready", "Stalled"), manager="ctrl")
    st = env.apply(ipb(name="ssa", sub="status"), conds("Ready", "Reconciling"), manager="ctrl")
    got = [c.get("type") for c in st["status"]["conditions"]]
    check(sorted(got) == ["Ready", "Reconciling"], got)
    env.fail("PATCH", ipb(name="ssa"), {"spec": {"role": "x"}}, "application/strategic-merge-patch+json",
             code=415, reason="UnsupportedMediaType")
    env.ok("DELETE", ipb(name="ssa"))


def t_delete_with_finalizer(env):
    rv = env.ok("GET", ipb())["metadata"]["resourceVersion"]
    w = env.watch(ipb(), f"resourceVersion={rv}&fieldSelector=metadata.name%3Dfin&timeoutSeconds=10")
    gen = env.ok("GET", ipb(name="fin"))["metadata"]["generation"]
    deleting = env.ok("DELETE", ipb(name="fin"), {"kind": "DeleteOptions", "apiVersion": "v1",
                                                  "propagationPolicy": "Background"})
    md = deleting["metadata"]
    check(md.get("deletionTimestamp") and md.get("deletionGracePeriodSeconds") == 0 and md["generation"] == gen + 1, md)
    again = env.ok("DELETE", ipb(name="fin"))
    check(again["metadata"]["deletionTimestamp"] == md["deletionTimestamp"]
          and again["metadata"]["resourceVersion"] == md["resourceVersion"])
    check(env.ok("GET", ipb(name="fin"))["metadata"]["deletionTimestamp"])
    env.fail("PATCH", ipb(name="fin"), [{"op": "add", "path": "/metadata/finalizers/-", "value": "new"}],
             "application/json-patch+json", code=422, reason="Invalid")
    env.jpatch(ipb(name="fin"), [{"op": "test", "path": "/metadata/finalizers/0", "value": "a.dev/cleanup"},
                                 {"op": "remove", "path": "/metadata/finalizers/0"}])
    env.fail("GET", ipb(name="fin"), code=404, reason="NotFound")
    evs = w.take(2)
    w.close()
    check([e["type"] for e in evs] == ["MODIFIED", "DELETED"], [e["type"] for e in evs])
    check(evs[0]["object"]["metadata"]["deletionTimestamp"])


def t_lease_optimistic_concurrency(env):
    path = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "leader"},
             "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15,
                      "renewTime": "2025-01-01T00:00:00.000000Z", "leaseTransitions": 0}}
    created = env.ok("POST", path, lease, expect=201)
    check(created["metadata"]["namespace"] == NS and created["spec"]["holderIdentity"] == "pod-a")
    env.fail("POST", path, lease, code=409, reason="AlreadyExists")
    stale = json.loads(json.dumps(created))
    created["spec"]["holderIdentity"] = "pod-b"
    renewed = env.ok("PUT", f"{path}/leader", created, expect=200)
    check(renewed["spec"]["holderIdentity"] == "pod-b")
    stale["spec"]["holderIdentity"] = "pod-c"
    env.fail("PUT", f"{path}/leader", stale, code=409, reason="Conflict")
    check(env.ok("GET", f"{path}/leader")["spec"]["holderIdentity"] == "pod-b")
    out = env.kubectl("get", "lease", "-n", NS)
    check("pod-b" in out, out)


def t_events_generate_name(env):
    web = env.ok("GET", ipb(name="web"))
    ev = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"generateName": "web-", "namespace": NS},
          "eventTime": "2025-01-01T00:00:00.000000Z", "reportingController": "ipb-controller",
          "reportingInstance": "ipb-controller-0", "action": "Reconcile", "reason": "ProfileCreated",
          "note": "created instance profile", "type": "Normal",
          "regarding": {"apiVersion": API, "kind": KIND, "name": "web", "namespace": NS,
                        "uid": web["metadata"]["uid"]}}
    created = env.ok("POST", f"/apis/events.k8s.io/v1/namespaces/{NS}/events", ev, expect=201)
    name = created["metadata"]["name"]
    check(re.fullmatch(r"web-[a-z0-9]{5}", name), name)
    # kube-rs's Recorder patches a repeated event with a merge patch carrying a series
    series = {"series": {"count": 2, "lastObservedTime": "2025-01-01T00:00:05.000000Z"}}
    env.mpatch(f"/apis/events.k8s.io/v1/namespaces/{NS}/events/{name}", series)
    core = env.ok("GET", f"/api/v1/namespaces/{NS}/events/{name}")
    check(core["involvedObject"]["name"] == "web" and core["message"] == "created instance profile"
          and core["reportingComponent"] == "ipb-controller" and core["series"]["count"] == 2, core)
    sel = env.ok("GET", f"/api/v1/namespaces/{NS}/events?fieldSelector=involvedObject.name%3Dweb,"
                        f"involvedObject.uid%3D{web['metadata']['uid']}")
    check([i["metadata"]["name"] for i in sel["items"]] == [name])
    out = env.kubectl("get", "events", "-n", NS)
    check("ProfileCreated" in out, out)
    out = env.kubectl("describe", "ipb", "-n", NS, "web")
    check("Events:" in out and "ProfileCreated" in out and "created instance profile" in out, out)


def t_selectors_and_errors(env):
    for n, labels in (("s1", {"env": "prod", "team": "a"}), ("s2", {"env": "dev"}), ("s3", {})):
        env.ok("POST", ipb(), binding(n, labels=labels or None))

    def names(sel):
        return sorted(i["metadata"]["name"] for i in env.ok("GET", ipb(query=sel))["items"]
                      if i["metadata"]["name"] in ("s1", "s2", "s3"))

    check(names("labelSelector=env%3Dprod") == ["s1"])
    check(names("labelSelector=env%21%3Dprod") == ["s2", "s3"])
    check(names("labelSelector=env") == ["s1", "s2"])
    check(names("labelSelector=%21env") == ["s3"])
    check(names("labelSelector=env%3Dprod,team%3Da") == ["s1"])
    check(names("labelSelector=env+in+(dev,qa)") == ["s2"])
    check(names("fieldSelector=metadata.name%3Ds2") == ["s2"])
    check(names(f"fieldSelector=metadata.namespace%3D{NS},metadata.name%21%3Ds2") == ["s1", "s3"])
    env.fail("GET", ipb(query="fieldSelector=spec.role%3Dx"), code=400, reason="BadRequest")
    nf = env.fail("GET", ipb(name="missing"), code=404, reason="NotFound")
    check(nf["details"] == {"name": "missing", "group": GROUP, "kind": PLURAL}
          and nf["message"] == f'{PLURAL}.{GROUP} "missing" not found', nf)
    env.fail("GET", f"/apis/{API}/namespaces/{NS}/nothings", code=404)
    env.fail("POST", ipb(), binding("s1"), code=409, reason="AlreadyExists")
    env.fail("POST", ipb(), binding("Bad_Name"), code=422, reason="Invalid")
    env.fail("PATCH", ipb(name="missing"), {"spec": {}}, "application/merge-patch+json", code=404)
    env.fail("PATCH", ipb(name="s1"), "{not json", "application/merge-patch+json", code=400)
    env.fail("DELETE", ipb(name="missing"), code=404, reason="NotFound")
    gone = env.ok("DELETE", ipb(name="s3"))
    check(gone["kind"] == "Status" and gone["status"] == "Success", gone)
    env.ok("DELETE", ipb(query="labelSelector=env"))
    check(names("") == [])


def t_kubectl_workflows(env):
    path = os.path.join(env.tmp, "ssa.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"apiVersion: {API}\nkind: {KIND}\nmetadata:\n  name: kssa\n  namespace: {NS}\n"
                f"spec:\n  role: r\n  instances:\n    ids: [i-0123456789abcdef0]\n")
    out = env.kubectl("apply", "--server-side", "-f", path)
    check("serverside-applied" in out, out)
    out = env.kubectl("label", "ipb", "-n", NS, "kssa", "team=x")
    check("labeled" in out, out)
    env.apply(ipb(name="kssa", sub="status"), ready_status())
    out = env.kubectl("wait", "-n", NS, "--for=condition=Ready", "ipb/kssa", "--timeout=10s")
    check("condition met" in out, out)
    out = env.kubectl("get", "ipb", "-n", NS, "-l", "team=x", "-o", "name")
    check(out.strip() == f"{KIND.lower()}.{GROUP}/kssa", out)
    out = env.kubectl("delete", "ipb", "-n", NS, "kssa")
    check(f'{KIND.lower()}.{GROUP} "kssa" deleted' in out, out)
    env.fail("GET", ipb(name="kssa"), code=404)
    # kubectl delete waits for the finalizer to go, like against a real server
    env.ok("POST", ipb(), binding("kfin"))
    env.jpatch(ipb(name="kfin"), [{"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]}])
    p = subprocess.Popen([env.kubectl_bin, "--kubeconfig", env.kubeconfig, "--cache-dir", env.cache,
                          "delete", "ipb", "-n", NS, "kfin", "--timeout=15s"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(50):
        if env.ok("GET", ipb(name="kfin"))["metadata"].get("deletionTimestamp"):
            break
        time.sleep(0.1)
    check(p.poll() is None, "kubectl delete returned before the finalizer was removed")
    env.mpatch(ipb(name="kfin"), {"metadata": {"finalizers": None}})
    out, err = p.communicate(timeout=15)
    check(p.returncode == 0 and "deleted" in out, f"{out} {err}")
    out = env.kubectl("get", "ns")
    check(NS in out and "default" in out and "Active" in out, out)


def t_namespace_deletion(env):
    ns = "e2e-gone"
    env.kubectl("create", "namespace", ns)
    env.ok("POST", ipb(ns), binding("plain", ns=ns))
    env.ok("POST", ipb(ns), binding("held", ns=ns))
    env.jpatch(ipb(ns, "held"), [{"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]}])
    out = env.kubectl("delete", "namespace", ns, "--wait=false")
    check(f'namespace "{ns}" deleted' in out, out)
    check(env.ok("GET", f"/api/v1/namespaces/{ns}")["status"]["phase"] == "Terminating")
    env.fail("GET", ipb(ns, "plain"), code=404)
    check(env.ok("GET", ipb(ns, "held"))["metadata"].get("deletionTimestamp"))
    env.fail("POST", ipb(ns), binding("late", ns=ns), code=403, reason="Forbidden")
    env.mpatch(ipb(ns, "held"), {"metadata": {"finalizers": None}})
    env.fail("GET", f"/api/v1/namespaces/{ns}", code=404)


def t_custom_resource_metadata(env):
    owner = env.ok("GET", ipb(name="web"))
    ref = {"apiVersion": API, "kind": KIND, "name": "web", "uid": owner["metadata"]["uid"], "controller": True}
    obj = binding("ignored")
    obj["metadata"] = {"generateName": "gen-", "ownerReferences": [ref], "annotations": {"a": "b"}}
    obj["spec"]["unknownField"] = 1
    created = env.ok("POST", ipb(), obj, expect=201)
    md = created["metadata"]
    check(re.fullmatch(r"gen-[a-z0-9]{5}", md["name"]) and md["generateName"] == "gen-", md)
    check(md["ownerReferences"] == [ref] and md["annotations"] == {"a": "b"}, md)
    check("unknownField" not in created["spec"], "unknown fields are pruned")
    env.fail("POST", ipb(query="fieldValidation=Strict"), {**obj, "metadata": {"name": "strict"}}, code=400,
             reason="BadRequest")
    env.ok("DELETE", ipb(name=md["name"]))


def t_crd_via_server_side_apply(env):
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.dev"},
           "spec": {"group": "example.dev", "scope": "Cluster",
                    "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]},
                    "versions": [
                        {"name": "v1", "served": True, "storage": True,
                         "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}},
                        {"name": "v2beta1", "served": True, "storage": False,
                         "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}
    created = env.apply(f"{crds}/widgets.example.dev", crd, manager="installer", expect=201)
    check({c["type"] for c in created["status"]["conditions"]} >= {"Established", "NamesAccepted"})
    group = [g for g in env.ok("GET", "/apis")["groups"] if g["name"] == "example.dev"][0]
    check(group["preferredVersion"]["version"] == "v1" and len(group["versions"]) == 2, group)
    env.ok("POST", "/apis/example.dev/v1/widgets", {"apiVersion": "example.dev/v1", "kind": "Widget",
                                                     "metadata": {"name": "w"}, "spec": {"size": 3}}, expect=201)
    v2 = env.ok("GET", "/apis/example.dev/v2beta1/widgets/w")
    check(v2["apiVersion"] == "example.dev/v2beta1" and v2["spec"]["size"] == 3 and "namespace" not in v2["metadata"])
    env.fail("GET", "/apis/example.dev/v1/namespaces/default/widgets/w", code=404)
    out = env.kubectl("get", "wd")
    check(out.split()[:3] == ["NAME", "AGE", "w"], out)
    env.ok("DELETE", f"{crds}/widgets.example.dev")
    env.fail("GET", "/apis/example.dev/v1/widgets/w", code=404)
    env.fail("GET", f"{crds}/widgets.example.dev", code=404)
    check(not [g for g in env.ok("GET", "/apis")["groups"] if g["name"] == "example.dev"])


def t_concurrency_keepalive_and_dump(env):
    w = env.watch(ipb(), "timeoutSeconds=30")
    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=5)
    t0 = time.monotonic()
    socks = set()
    for _ in range(20):
        conn.request("GET", ipb(name="web"))
        resp = conn.getresponse()
        check(resp.status == 200 and resp.getheader("Content-Length"), resp.status)
        resp.read()
        socks.add(id(conn.sock))
    conn.close()
    w.close()
    check(len(socks) == 1, "connection was not kept alive")
    check(time.monotonic() - t0 < 3, "requests blocked behind a watch")
    dump = env.ok("GET", "/_emulator/objects")
    kinds = {i.get("kind") for i in dump["items"]}
    check({"Namespace", "CustomResourceDefinition", KIND, "Lease"} <= kinds, kinds)


def t_sigterm_clean_exit(env):
    env.proc.send_signal(signal.SIGTERM)
    try:
        out, err = env.proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        env.proc.kill()
        raise Failure("emulator did not exit on SIGTERM")
    check(env.proc.returncode == 0, f"exit status {env.proc.returncode}")
    check(out == b"" and err == b"", f"unexpected output: stdout={out!r} stderr={err!r}")


TESTS = [
    t_startup_and_discovery, t_crd_established, t_namespace_required, t_kubectl_apply_and_printer_columns,
    t_table_over_http, t_list_paging, t_watch_order_and_resume, t_watch_bookmarks_timeout_initial_events,
    t_watch_label_selector_transitions, t_put_stale_rv_conflict, t_json_patch_finalizer,
    t_generation_and_status_subresource, t_server_side_apply, t_delete_with_finalizer,
    t_lease_optimistic_concurrency, t_events_generate_name, t_selectors_and_errors, t_kubectl_workflows,
    t_namespace_deletion, t_custom_resource_metadata, t_crd_via_server_side_apply,
    t_concurrency_keepalive_and_dump, t_sigterm_clean_exit,
]


def main():
    start = time.time()
    passed = failed = 0
    env = Env()
    print(f"# emulator on port {env.port}, {env.crd_note}")
    try:
        for test in TESTS:
            t0 = time.time()
            try:
                test(env)
                passed += 1
                print(f"ok   {test.__name__} ({time.time() - t0:.2f}s)")
            except Exception:  # noqa: BLE001
                failed += 1
                print(f"FAIL {test.__name__}")
                traceback.print_exc(file=sys.stdout)
            sys.stdout.flush()
    finally:
        env.close()
    print(f"total {time.time() - start:.1f}s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
