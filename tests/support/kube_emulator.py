#!/usr/bin/env python3
"""A small Kubernetes API server emulator for end-to-end tests of kube-rs
controllers and for kubectl.

Usage:
    python3 kube_emulator.py [--listen 127.0.0.1:0] [--kubeconfig PATH]
                             [--crd FILE ...] [--verbose]

Binds (port 0 = a free port), writes a kubeconfig at PATH (no auth, current
context "emulator", namespace default), registers the CustomResourceDefinitions
found in the given files (multi-document YAML needs PyYAML; JSON works without
it), prints exactly one line ``READY <port>`` on stdout and serves until
SIGTERM / SIGINT (exit status 0). Quiet otherwise: request logs go to stderr
only with --verbose; an internal error (HTTP 500) always prints its traceback.

What it emulates (see the module's tests for the checked behaviour):
  * generic storage of objects, one global resourceVersion counter, full event
    history kept in memory so a watch can resume from any older version;
  * built-in kinds: v1 namespaces, events, configmaps, secrets, pods;
    coordination.k8s.io/v1 leases; events.k8s.io/v1 events (the same storage as
    core v1 events, converted like the real server does);
    apiextensions.k8s.io/v1 customresourcedefinitions, whose creation
    registers the custom kinds of every served version;
  * get, list (limit / continue paging), watch (bookmarks, sendInitialEvents, selectors), create
    (generateName), replace (optimistic concurrency), merge / JSON / strategic
    (built-ins only) patches, server-side apply (field ownership per manager,
    removal of fields a manager stops applying, conflicts unless force),
    delete (finalizers, deletionTimestamp, namespace and CRD clean-up),
    delete collection, status subresources, generation, structural pruning
    and defaulting of custom resources from their OpenAPI schema;
  * discovery (/api, /apis, /api/v1, /apis/G/V; aggregated discovery is
    answered with the legacy documents so clients fall back), Table output with
    the CRD's additionalPrinterColumns, PartialObjectMetadata(List) output;
  * a minimal /openapi/v3 (PATCH operations advertise fieldValidation, CRD
    schemas as components) so that plain `kubectl apply -f` works; /openapi/v2
    is 404;
  * protobuf request bodies of Namespace, ConfigMap and Secret (what kubectl's
    typed `create namespace|configmap|secret` send); responses are always JSON;
  * /healthz /readyz /livez, and GET /_emulator/objects (every stored object).

Not emulated: OpenAPI schema validation of custom resources (types, required,
enum, CEL rules; pruning and defaulting are done), 410 Gone for old watch
versions (the history is never compacted), authentication / RBAC / admission,
garbage collection through ownerReferences, controllers of built-in kinds
(pods stay as written), protobuf or CBOR responses, conversion webhooks (all
versions of a CRD share one storage, conversion "None").

Standard library only (PyYAML optional, see above).
"""

import argparse
import base64
import bisect
import json
import os
import random
import re
import select
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

try:  # optional: YAML CRD files and YAML server-side-apply bodies
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    yaml = None

if yaml is not None:
    class _YamlLoader(yaml.SafeLoader):
        """SafeLoader that keeps timestamps as strings (Kubernetes does)."""

    _YamlLoader.yaml_implicit_resolvers = {
        k: [r for r in v if r[0] != "tag:yaml.org,2002:timestamp"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

VERBOSE = False
GIT_VERSION = "v1.33.0"
WATCH_DEFAULT_TIMEOUT = 300.0
BOOKMARK_INTERVAL = 1.0
NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand


def log(msg):
    if VERBOSE:
        sys.stderr.write(f"[kube-emulator] {msg}\n")
        sys.stderr.flush()


# ---------------------------------------------------------------------------
# small helpers

def dc(v):
    """Deep copy of JSON data (faster than copy.deepcopy)."""
    if isinstance(v, dict):
        return {k: dc(x) for k, x in v.items()}
    if isinstance(v, list):
        return [dc(x) for x in v]
    return v


def jeq(a, b):
    """JSON equality (bools are not numbers)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(jeq(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(jeq(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def now_ts():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(s):
    s = s.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    d = datetime.fromisoformat(s)
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d


def human_duration(seconds):
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        sec = s % 60
        return f"{minutes}m" if sec == 0 else f"{minutes}m{sec}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


_VER_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(v):
    """Sort key, larger is preferred (kube-aware version ordering)."""
    m = _VER_RE.match(v)
    if not m:
        return (0, 0, 0, 0, tuple(-ord(c) for c in v))
    stage = {None: 3, "beta": 2, "alpha": 1}[m.group(2)]
    return (1, stage, int(m.group(1)), int(m.group(3) or 0), ())


def load_documents(text):
    """JSON (object, array or List) or multi-document YAML -> list of dicts."""
    stripped = text.strip()
    if not stripped:
        return []
    try:
        docs = json.loads(stripped)
        docs = docs if isinstance(docs, list) else [docs]
    except ValueError:
        if yaml is None:
            raise ValueError("this file is not JSON and PyYAML is not installed")
        docs = list(yaml.load_all(stripped, Loader=_YamlLoader))
    out = []
    for d in docs:
        if d is None:
            continue
        if isinstance(d, dict) and str(d.get("kind", "")).endswith("List") and isinstance(d.get("items"), list):
            out.extend(x for x in d["items"] if isinstance(x, dict))
        elif isinstance(d, dict):
            out.append(d)
    return out


# ---------------------------------------------------------------------------
# API errors

class ApiError(Exception):
    def __init__(self, code, reason, message, name=None, group=None, kind=None, causes=None, retry_after=None):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.name, self.group, self.kind, self.causes = name, group, kind, causes
        self.retry_after = retry_after

    def status(self):
        details = {}
        if self.name is not None:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind is not None:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = self.causes
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}
        if details:
            body["details"] = details
        return body


def not_found(rt, name):
    return ApiError(404, "NotFound", f'{rt.qname} "{name}" not found', name, rt.group, rt.plural)


def not_found_path():
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def bad_request(msg):
    return ApiError(400, "BadRequest", msg)


def conflict(rt, name, msg=None):
    msg = msg or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rt.qname} "{name}": {msg}',
                    name, rt.group, rt.plural)


def invalid(rt, name, field, detail):
    cause = {"reason": "FieldValueInvalid", "message": detail, "field": field}
    msg = f'{rt.gk} "{name}" is invalid: {field}: {detail}'
    return ApiError(422, "Invalid", msg, name, rt.group, rt.kind, [cause])


# ---------------------------------------------------------------------------
# patches

class PatchError(Exception):
    """A patch that cannot be applied to the object (HTTP 422)."""


class PatchFormatError(Exception):
    """A malformed patch document (HTTP 400)."""


def _ptr(path):
    if not isinstance(path, str):
        raise PatchFormatError("JSON pointer must be a string")
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(tok, n, allow_end):
    if tok == "-" and allow_end:
        return n
    if not re.fullmatch(r"0|[1-9][0-9]*", tok):
        raise PatchError(f"invalid array index: {tok!r}")
    i = int(tok)
    if i > n or (i == n and not allow_end):
        raise PatchError(f"array index out of bounds: {i}")
    return i


def _walk(doc, toks, path):
    cur = doc
    for t in toks:
        if isinstance(cur, dict):
            if t not in cur:
                raise PatchError(f"missing value at {path}")
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_index(t, len(cur), False)]
        else:
            raise PatchError(f"missing value at {path}")
    return cur


def _lookup(doc, toks):
    cur = doc
    for t in toks:
        if isinstance(cur, dict) and t in cur:
            cur = cur[t]
        elif isinstance(cur, list) and re.fullmatch(r"0|[1-9][0-9]*", t) and int(t) < len(cur):
            cur = cur[int(t)]
        else:
            return False, None
    return True, cur


def _add(doc, toks, value, path):
    if not toks:
        return value
    parent = _walk(doc, toks[:-1], path)
    last = toks[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(last, len(parent), True), value)
    else:
        raise PatchError(f"cannot add at {path}: parent is not a container")
    return doc


def _remove(doc, toks, path):
    if not toks:
        raise PatchError("cannot remove the document root")
    parent = _walk(doc, toks[:-1], path)
    last = toks[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"unable to remove nonexistent key: {last}: missing value")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(last, len(parent), False))
    raise PatchError(f"cannot remove at {path}")


def _replace(doc, toks, value, path):
    if not toks:
        return value
    parent = _walk(doc, toks[:-1], path)
    last = toks[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"replace operation does not apply: doc is missing key: {path}: missing value")
        parent[last] = value
    elif isinstance(parent, list):
        parent[_index(last, len(parent), False)] = value
    else:
        raise PatchError(f"cannot replace at {path}")
    return doc


def json_patch(doc, ops):
    """RFC 6902 with the quirk of evanphx/json-patch that the apiserver uses:
    ``test`` of a missing path against null succeeds (kube-rs relies on it)."""
    if not isinstance(ops, list):
        raise PatchFormatError("json patch must be an array of operations")
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchFormatError(f"invalid json patch operation: {json.dumps(op)}")
        kind, path = op["op"], op["path"]
        toks = _ptr(path)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchFormatError(f"{kind} operation requires a value")
        if kind == "add":
            doc = _add(doc, toks, dc(op["value"]), path)
        elif kind == "remove":
            doc, _ = _remove(doc, toks, path)
        elif kind == "replace":
            doc = _replace(doc, toks, dc(op["value"]), path)
        elif kind in ("move", "copy"):
            frm = op.get("from")
            ftoks = _ptr(frm)
            if kind == "move":
                doc, val = _remove(doc, ftoks, frm)
            else:
                val = dc(_walk(doc, ftoks, frm))
            doc = _add(doc, toks, val, path)
        elif kind == "test":
            found, val = _lookup(doc, toks)
            if not found:
                if op["value"] is None:
                    continue
                raise PatchError(f"testing value {path} failed: test failed")
            if not jeq(val, op["value"]):
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchFormatError(f"unexpected json patch operation {kind!r}")
    return doc


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return dc(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


_SMP_DELETE = object()
# lists of built-in types that strategic merge patch merges instead of replacing
_SMP_MERGE_PRIMITIVE_LISTS = {("metadata", "finalizers")}
_SMP_MERGE_KEYED_LISTS = {("metadata", "ownerReferences"): "uid", ("status", "conditions"): "type"}


def strategic_merge_patch(target, patch, path=()):
    """Strategic merge patch without Go type information: a merge patch that
    understands the common directives and the merge lists of ObjectMeta."""
    if not isinstance(patch, dict):
        return dc(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return _SMP_DELETE
    if directive == "replace":
        return {k: dc(v) for k, v in patch.items() if not k.startswith("$")}
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        p = path + (k,)
        if v is None:
            out.pop(k, None)
        elif p in _SMP_MERGE_PRIMITIVE_LISTS and isinstance(v, list) and isinstance(out.get(k), list):
            merged = list(out[k])
            merged.extend(x for x in v if not any(jeq(x, y) for y in merged))
            out[k] = merged
        elif p in _SMP_MERGE_KEYED_LISTS and isinstance(v, list) and isinstance(out.get(k), list):
            key = _SMP_MERGE_KEYED_LISTS[p]
            merged = list(out[k])
            for item in v:
                if not isinstance(item, dict):
                    continue
                idx = next((i for i, e in enumerate(merged) if isinstance(e, dict) and e.get(key) == item.get(key)), None)
                if item.get("$patch") == "delete":
                    if idx is not None:
                        merged.pop(idx)
                elif idx is None:
                    merged.append({a: dc(b) for a, b in item.items() if not a.startswith("$")})
                else:
                    merged[idx] = strategic_merge_patch(merged[idx], item, p)
            out[k] = merged
        elif isinstance(v, dict):
            r = strategic_merge_patch(out.get(k), v, p)
            if r is _SMP_DELETE:
                out.pop(k, None)
            else:
                out[k] = r
        else:
            out[k] = dc(v)
    for k, v in patch.items():
        if k.startswith("$deleteFromPrimitiveList/") and isinstance(v, list):
            f = k.split("/", 1)[1]
            if isinstance(out.get(f), list):
                out[f] = [x for x in out[f] if not any(jeq(x, y) for y in v)]
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


# ---------------------------------------------------------------------------
# selectors

def _split_top(s):
    parts, depth, cur = [], 0, []
    for c in s:
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


_LKEY = r"[A-Za-z0-9._/-]+"


def parse_label_selector(s):
    reqs = []
    if not s or not s.strip():
        return reqs
    for part in _split_top(s):
        p = part.strip()
        if not p:
            raise bad_request(f"unable to parse requirement: found '', expected: identifier")
        m = re.fullmatch(rf"({_LKEY})\s+(in|notin)\s*\(([^)]*)\)", p)
        if m:
            reqs.append((m.group(1), m.group(2), {x.strip() for x in m.group(3).split(",") if x.strip()}))
            continue
        m = re.fullmatch(rf"!\s*({_LKEY})", p)
        if m:
            reqs.append((m.group(1), "!", None))
            continue
        m = re.fullmatch(rf"({_LKEY})\s*(==|!=|=)\s*([A-Za-z0-9._-]*)", p)
        if m:
            reqs.append((m.group(1), "=" if m.group(2) == "==" else m.group(2), m.group(3)))
            continue
        m = re.fullmatch(rf"({_LKEY})", p)
        if m:
            reqs.append((m.group(1), "exists", None))
            continue
        raise bad_request(f"unable to parse requirement: {p!r}")
    return reqs


def labels_match(reqs, labels):
    labels = labels or {}
    for key, op, val in reqs:
        has = key in labels
        if op == "=" and not (has and labels[key] == val):
            return False
        if op == "!=" and has and labels[key] == val:
            return False
        if op == "in" and not (has and labels[key] in val):
            return False
        if op == "notin" and has and labels[key] in val:
            return False
        if op == "exists" and not has:
            return False
        if op == "!" and has:
            return False
    return True


def parse_field_selector(s):
    reqs = []
    if not s or not s.strip():
        return reqs
    for part in s.split(","):
        m = re.fullmatch(r"\s*([^=!\s]+)\s*(==|!=|=)\s*(.*?)\s*", part)
        if not m:
            raise bad_request(f"invalid field selector: {part!r}")
        reqs.append((m.group(1), "=" if m.group(2) == "==" else m.group(2), m.group(3)))
    return reqs


def field_value(obj, key):
    cur = obj
    for p in key.split("."):
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        else:
            return ""
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, (dict, list)):
        return json.dumps(cur)
    return str(cur)


def fields_match(reqs, obj):
    for key, op, val in reqs:
        v = field_value(obj, key)
        if (op == "=") != (v == val):
            return False
    return True


# ---------------------------------------------------------------------------
# JSONPath (the subset used by printer columns and selectable fields)

def jsonpath_parse(expr):
    e = expr.strip()
    if e.startswith("{") and e.endswith("}"):
        e = e[1:-1].strip()
    if e.startswith("$"):
        e = e[1:]
    segs, i = [], 0
    while i < len(e):
        c = e[i]
        if c == ".":
            if e.startswith("..", i):
                raise ValueError("recursive descent is not supported")
            i += 1
            j = i
            while j < len(e) and e[j] not in ".[":
                j += 1
            if j > i:
                segs.append(("field", e[i:j]))
            i = j
        elif c == "[":
            j, depth, quote = i, 0, None
            while j < len(e):
                ch = e[j]
                if quote:
                    if ch == quote:
                        quote = None
                elif ch in "'\"":
                    quote = ch
                elif ch == "[":
                    depth += 1
                elif ch == "]":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if j >= len(e):
                raise ValueError(f"unterminated [ in {expr!r}")
            inner = e[i + 1:j].strip()
            i = j + 1
            if inner == "*":
                segs.append(("all",))
            elif inner.startswith("?(") and inner.endswith(")"):
                segs.append(("filter",) + _jp_filter(inner[2:-1].strip()))
            elif len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
                segs.append(("field", inner[1:-1]))
            elif ":" in inner:
                a, _, b = inner.partition(":")
                segs.append(("slice", int(a) if a.strip() else None, int(b.split(":")[0]) if b.split(":")[0].strip() else None))
            else:
                segs.append(("index", int(inner)))
        else:
            j = i
            while j < len(e) and e[j] not in ".[":
                j += 1
            segs.append(("field", e[i:j]))
            i = j
    return segs


def _jp_filter(f):
    m = re.fullmatch(r"@((?:\.[A-Za-z0-9_\-/]+)+)\s*(==|!=|<=|>=|<|>)\s*(.+)", f)
    if m:
        lit = m.group(3).strip()
        if len(lit) >= 2 and lit[0] == lit[-1] and lit[0] in "'\"":
            val = lit[1:-1]
        elif lit in ("true", "false"):
            val = lit == "true"
        else:
            try:
                val = json.loads(lit)
            except ValueError:
                val = lit
        return (m.group(1)[1:].split("."), m.group(2), val)
    m = re.fullmatch(r"@((?:\.[A-Za-z0-9_\-/]+)+)", f)
    if m:
        return (m.group(1)[1:].split("."), "exists", None)
    raise ValueError(f"unsupported filter {f!r}")


def _jp_cmp(a, op, b):
    try:
        if op == "==":
            return a == b
        if op == "!=":
            return a != b
        if op == "<":
            return a < b
        if op == ">":
            return a > b
        if op == "<=":
            return a <= b
        if op == ">=":
            return a >= b
    except TypeError:
        return False
    return False


def jsonpath_eval(segs, obj):
    cur = [obj]
    for seg in segs:
        nxt = []
        for v in cur:
            if seg[0] == "field":
                if isinstance(v, dict) and seg[1] in v:
                    nxt.append(v[seg[1]])
            elif seg[0] == "index":
                if isinstance(v, list) and -len(v) <= seg[1] < len(v):
                    nxt.append(v[seg[1]])
            elif seg[0] == "slice":
                if isinstance(v, list):
                    nxt.extend(v[seg[1]:seg[2]])
            elif seg[0] == "all":
                if isinstance(v, list):
                    nxt.extend(v)
                elif isinstance(v, dict):
                    nxt.extend(v.values())
            elif seg[0] == "filter":
                _, path, op, val = seg
                items = v if isinstance(v, list) else []
                for item in items:
                    x, ok = item, True
                    for p in path:
                        if isinstance(x, dict) and p in x:
                            x = x[p]
                        else:
                            ok = False
                            break
                    if op == "exists":
                        if ok:
                            nxt.append(item)
                    elif ok and _jp_cmp(x, op, val):
                        nxt.append(item)
        cur = nxt
    return cur


def go_print(v):
    """fmt.Fprint of a decoded JSON value, like kubectl's JSONPath printer."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "<nil>"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e21 else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_print(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(go_print(x) for x in v) + "]"
    return str(v)


def column_cell(col, obj, now):
    try:
        segs = col.get("_segs")
        if segs is None:
            segs = jsonpath_parse(col.get("jsonPath", ""))
        res = jsonpath_eval(segs, obj)
    except (ValueError, TypeError):
        return None
    if not res:
        return None
    value = res[0]
    typ = col.get("type", "string")
    if typ == "string":
        return go_print(value)
    if value is None:
        return None
    if typ == "integer":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
        return None
    if typ == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return None
    if typ == "boolean":
        return value if isinstance(value, bool) else None
    if typ == "date":
        if isinstance(value, str):
            try:
                return human_duration((now - parse_ts(value)).total_seconds())
            except ValueError:
                return "<invalid>"
        return None
    return None


# ---------------------------------------------------------------------------
# schemas, pruning, defaulting, field ownership

META_FIELDS = ("name", "generateName", "namespace", "uid", "resourceVersion", "generation",
               "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
               "annotations", "ownerReferences", "finalizers")
META_ORDER = ("name", "generateName", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
              "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences",
              "finalizers", "managedFields")
SERVER_META = ("uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
               "deletionGracePeriodSeconds")
TRACKED_META = ("labels", "annotations", "finalizers", "ownerReferences")

META_SCHEMA = {
    "type": "object",
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"]},
    },
}

BUILTIN_SCHEMA = {
    "type": "object",
    "properties": {
        "metadata": META_SCHEMA,
        "status": {"type": "object", "properties": {"conditions": {
            "type": "array", "items": {"type": "object"},
            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}}},
    },
}


def norm_meta(m):
    """ObjectMeta round trip: unknown and empty fields disappear."""
    out = {}
    if not isinstance(m, dict):
        return out
    for k in META_FIELDS:
        if k not in m:
            continue
        v = m[k]
        if v is None or (isinstance(v, (str, list, dict)) and len(v) == 0):
            continue
        out[k] = dc(v)
    return out


def sch_child(s, k):
    if not isinstance(s, dict):
        return None
    props = s.get("properties")
    if isinstance(props, dict) and k in props:
        return props[k]
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):
        return ap
    return None


def prune(v, s, path, unknown):
    """Structural pruning; nulls of non-nullable fields are dropped too."""
    if not isinstance(s, dict):
        return
    if isinstance(v, dict):
        props = s.get("properties") if isinstance(s.get("properties"), dict) else {}
        ap = s.get("additionalProperties")
        preserve = s.get("x-kubernetes-preserve-unknown-fields") is True or ap is True
        embedded = s.get("x-kubernetes-embedded-resource") is True
        for k in list(v.keys()):
            if k in props or isinstance(ap, dict):
                cs = props.get(k) if k in props else ap
                if v[k] is None and not (isinstance(cs, dict) and cs.get("nullable")):
                    del v[k]
                    continue
                prune(v[k], cs, path + [k], unknown)
            elif embedded and k in ("apiVersion", "kind", "metadata"):
                continue
            elif not preserve:
                unknown.append(".".join(path + [k]))
                del v[k]
    elif isinstance(v, list):
        it = s.get("items")
        if isinstance(it, dict):
            for i, x in enumerate(v):
                prune(x, it, path[:-1] + [f"{path[-1]}[{i}]"] if path else [f"[{i}]"], unknown)


def apply_defaults(v, s):
    if not isinstance(s, dict):
        return
    if isinstance(v, dict):
        props = s.get("properties") if isinstance(s.get("properties"), dict) else {}
        for k, cs in props.items():
            if not isinstance(cs, dict):
                continue
            if k not in v and "default" in cs:
                v[k] = dc(cs["default"])
            if k in v:
                apply_defaults(v[k], cs)
        ap = s.get("additionalProperties")
        if isinstance(ap, dict):
            for k in v:
                if k not in props:
                    apply_defaults(v[k], ap)
    elif isinstance(v, list):
        it = s.get("items")
        if isinstance(it, dict):
            for x in v:
                apply_defaults(x, it)


class _Node:
    def __repr__(self):
        return "NODE"


NODE = _Node()


def _jkey(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def flatten(obj, schema):
    """Field paths of an object -> leaf value or NODE (maps, keyed list items)."""
    out = {}
    if not isinstance(obj, dict):
        return out
    for k, v in obj.items():
        if k in ("apiVersion", "kind"):
            continue
        if k == "metadata":
            if isinstance(v, dict):
                sub = {kk: vv for kk, vv in v.items() if kk in TRACKED_META}
                if sub:
                    _flat(sub, META_SCHEMA, (("f", "metadata"),), out)
            continue
        _flat(v, sch_child(schema, k), (("f", k),), out)
    return out


def _flat(v, s, p, out):
    if isinstance(v, dict):
        out[p] = NODE
        for k, x in v.items():
            _flat(x, sch_child(s, k), p + (("f", k),), out)
        return
    if isinstance(v, list) and isinstance(s, dict):
        lt = s.get("x-kubernetes-list-type")
        if lt == "map":
            keys = s.get("x-kubernetes-list-map-keys") or []
            out[p] = NODE
            for x in v:
                if isinstance(x, dict):
                    _flat(x, s.get("items"), p + (("k", _jkey({kk: x.get(kk) for kk in keys if kk in x})),), out)
            return
        if lt == "set":
            out[p] = NODE
            for x in v:
                out[p + (("v", _jkey(x)),)] = x
            return
    out[p] = v


def _nav(cur, seg):
    kind, key = seg
    if kind == "f":
        return cur.get(key, _MISSING) if isinstance(cur, dict) else _MISSING
    if not isinstance(cur, list):
        return _MISSING
    if kind == "k":
        want = json.loads(key)
        for x in cur:
            if isinstance(x, dict) and all(x.get(a) == b for a, b in want.items()):
                return x
        return _MISSING
    want = json.loads(key)
    for x in cur:
        if jeq(x, want):
            return x
    return _MISSING


_MISSING = object()


def remove_path(obj, path):
    cur = obj
    for seg in path[:-1]:
        cur = _nav(cur, seg)
        if cur is _MISSING:
            return
    kind, key = path[-1]
    if kind == "f":
        if isinstance(cur, dict):
            cur.pop(key, None)
    elif isinstance(cur, list):
        want = json.loads(key)
        if kind == "k":
            cur[:] = [x for x in cur if not (isinstance(x, dict) and all(x.get(a) == b for a, b in want.items()))]
        else:
            cur[:] = [x for x in cur if not jeq(x, want)]


def ssa_merge(cur, app, s):
    if isinstance(app, dict) and isinstance(cur, dict):
        out = dict(cur)
        for k, v in app.items():
            out[k] = ssa_merge(out[k], v, sch_child(s, k)) if k in out else dc(v)
        return out
    if isinstance(app, list) and isinstance(cur, list) and isinstance(s, dict):
        lt = s.get("x-kubernetes-list-type")
        if lt == "map":
            keys = s.get("x-kubernetes-list-map-keys") or []
            out = list(cur)
            for x in app:
                idx = None
                if isinstance(x, dict):
                    idx = next((i for i, y in enumerate(out) if isinstance(y, dict)
                                and all(y.get(k) == x.get(k) for k in keys)), None)
                if idx is None:
                    out.append(dc(x))
                else:
                    out[idx] = ssa_merge(out[idx], x, s.get("items"))
            return out
        if lt == "set":
            out = list(cur)
            out.extend(dc(x) for x in app if not any(jeq(x, y) for y in out))
            return out
    return dc(app)


def path_str(p):
    out = ""
    for kind, key in p:
        if kind == "f":
            out += "." + key
        elif kind == "k":
            out += "[" + ",".join(f"{a}={json.dumps(b)}" for a, b in json.loads(key).items()) + "]"
        else:
            out += f"[={key}]"
    return out


def fields_v1(paths):
    root = {}
    for p in sorted(paths, key=lambda x: (len(x), x)):
        node = root
        for kind, key in p:
            node = node.setdefault(f"{kind}:{key}", {})
    for p in paths:
        if len(p) < 2:
            continue
        node = root
        for kind, key in p:
            node = node[f"{kind}:{key}"]
        if node and "." not in node:
            node["."] = {}
    return root


# ---------------------------------------------------------------------------
# resource types

def _ev_to_core(o):
    m = {"regarding": "involvedObject", "note": "message", "deprecatedSource": "source",
         "reportingController": "reportingComponent", "deprecatedFirstTimestamp": "firstTimestamp",
         "deprecatedLastTimestamp": "lastTimestamp", "deprecatedCount": "count"}
    return {m.get(k, k): v for k, v in o.items()}


def _ev_from_core(o):
    m = {"involvedObject": "regarding", "message": "note", "source": "deprecatedSource",
         "reportingComponent": "reportingController", "firstTimestamp": "deprecatedFirstTimestamp",
         "lastTimestamp": "deprecatedLastTimestamp", "count": "deprecatedCount"}
    return {m.get(k, k): v for k, v in o.items()}


AGE_COL = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class RType:
    def __init__(self, group, version, plural, kind, namespaced, singular=None, short_names=(),
                 categories=(), list_kind=None, status_sub=False, generation=False, unconditional=True,
                 custom=False, schema=None, columns=None, skey=None, conv=None, selectable=(), crd=None):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced = namespaced
        self.singular = singular or kind.lower()
        self.short_names = list(short_names or [])
        self.categories = list(categories or [])
        self.list_kind = list_kind or kind + "List"
        self.status_sub, self.generation, self.unconditional = status_sub, generation, unconditional
        self.custom, self.schema, self.crd = custom, schema, crd
        self.columns = []
        for c in (columns if columns is not None else [AGE_COL]):
            c = dict(c)
            try:
                c["_segs"] = jsonpath_parse(c.get("jsonPath", ""))
            except (ValueError, TypeError):
                c["_segs"] = []
            self.columns.append(c)
        self.skey = skey or f"{group}/{plural}"
        self.conv = conv
        self.selectable = [s.lstrip(".") for s in selectable or []]
        self.api_version = f"{group}/{version}" if group else version
        self.qname = f"{plural}.{group}" if group else plural
        self.gk = f"{kind}.{group}" if group else kind
        self.is_namespace = group == "" and plural == "namespaces"
        self.is_crd = group == "apiextensions.k8s.io" and plural == "customresourcedefinitions"
        if custom:
            root = dict(schema) if isinstance(schema, dict) else {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            props = dict(root.get("properties") or {})
            props["metadata"] = META_SCHEMA
            props["apiVersion"] = {"type": "string"}
            props["kind"] = {"type": "string"}
            root["properties"] = props
            self.root_schema = root
        else:
            self.root_schema = BUILTIN_SCHEMA

    def to_ext(self, o):
        x = dc(o)
        if self.conv:
            x = self.conv[0](x)
        x.pop("apiVersion", None)
        x.pop("kind", None)
        return {"apiVersion": self.api_version, "kind": self.kind, **x}

    def to_int(self, x):
        o = dc(x)
        if self.conv:
            o = self.conv[1](o)
        return o


def builtin_types():
    ev_conv = (_ev_to_core, _ev_from_core)
    return [
        RType("", "v1", "namespaces", "Namespace", False, short_names=["ns"], status_sub=True,
              columns=[{"name": "Status", "type": "string", "jsonPath": ".status.phase"}, AGE_COL]),
        RType("", "v1", "events", "Event", True, short_names=["ev"], skey="events.k8s.io/events", conv=ev_conv,
              columns=[{"name": "Type", "type": "string", "jsonPath": ".type"},
                       {"name": "Reason", "type": "string", "jsonPath": ".reason"},
                       {"name": "Object", "type": "string", "jsonPath": ".involvedObject.name"},
                       {"name": "Message", "type": "string", "jsonPath": ".message"}, AGE_COL]),
        RType("", "v1", "configmaps", "ConfigMap", True, short_names=["cm"]),
        RType("", "v1", "secrets", "Secret", True),
        RType("", "v1", "pods", "Pod", True, short_names=["po"], categories=["all"], status_sub=True),
        RType("coordination.k8s.io", "v1", "leases", "Lease", True,
              columns=[{"name": "Holder", "type": "string", "jsonPath": ".spec.holderIdentity"}, AGE_COL]),
        RType("events.k8s.io", "v1", "events", "Event", True, short_names=["ev"],
              columns=[{"name": "Type", "type": "string", "jsonPath": ".type"},
                       {"name": "Reason", "type": "string", "jsonPath": ".reason"},
                       {"name": "Note", "type": "string", "jsonPath": ".note"}, AGE_COL]),
        RType("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
              short_names=["crd", "crds"], status_sub=True, generation=True, unconditional=False,
              columns=[{"name": "Created At", "type": "string", "jsonPath": ".metadata.creationTimestamp"}]),
    ]


class Ctx:
    """Per-request write options."""

    def __init__(self, manager="unknown", manager_param=False, dry_run=False, validation="Warn", force=False,
                 force_given=False):
        self.manager, self.manager_param = manager, manager_param
        self.dry_run, self.validation, self.force, self.force_given = dry_run, validation, force, force_given
        self.warnings = []


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# ---------------------------------------------------------------------------
# the cluster: registry + storage + verbs (every method runs under self.lock)

class Cluster:
    def __init__(self):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 100
        self.types = {}      # (group, version, plural) -> RType
        self.objs = {}       # skey -> {(ns, name): stored object}
        self.hist = {}       # skey -> ([rv], [(rv, type, new, old)])
        self.owners = {}     # (skey, ns, name) -> {(manager, op, sub): {"paths", "time", "apiVersion"}}
        self.pending_ns = set()
        self.pending_crd = set()
        for rt in builtin_types():
            self.types[(rt.group, rt.version, rt.plural)] = rt
        ctx = Ctx(manager="kube-apiserver")
        ns_rt = self.types[("", "v1", "namespaces")]
        with self.lock:
            for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
                self._write(ns_rt, None, ns, None, {"metadata": {"name": ns}}, None, ctx)

    # -- registry ---------------------------------------------------------
    def lookup(self, group, version, plural):
        return self.types.get((group, version, plural))

    def group_versions(self):
        """{group: [versions, preferred first]} (core group is "")."""
        gv = {}
        for (g, v, _p) in self.types:
            gv.setdefault(g, set()).add(v)
        return {g: sorted(vs, key=version_priority, reverse=True) for g, vs in gv.items()}

    def _register_crd(self, crd):
        name = crd["metadata"]["name"]
        self._unregister_crd(name)
        spec = crd.get("spec") or {}
        group = spec.get("group")
        names = spec.get("names") or {}
        for v in spec.get("versions") or []:
            if not isinstance(v, dict) or not v.get("served", True) or not v.get("name"):
                continue
            schema = (v.get("schema") or {}).get("openAPIV3Schema")
            subs = v.get("subresources") or {}
            cols = v.get("additionalPrinterColumns")
            rt = RType(group, v["name"], names["plural"], names["kind"],
                       spec.get("scope", "Namespaced") == "Namespaced",
                       singular=names.get("singular") or names["kind"].lower(),
                       short_names=names.get("shortNames") or [], categories=names.get("categories") or [],
                       list_kind=names.get("listKind") or names["kind"] + "List",
                       status_sub=isinstance(subs, dict) and "status" in subs and subs["status"] is not None,
                       generation=True, unconditional=False, custom=True, schema=schema,
                       columns=cols if cols else [AGE_COL],
                       selectable=[f.get("jsonPath", "") for f in v.get("selectableFields") or [] if isinstance(f, dict)],
                       crd=name)
            self.types[(group, v["name"], names["plural"])] = rt
        log(f"registered CRD {name}")

    def _unregister_crd(self, name):
        for k in [k for k, rt in self.types.items() if rt.crd == name]:
            del self.types[k]

    def _crd_rtypes(self, name):
        return [rt for rt in self.types.values() if rt.crd == name]

    # -- low-level storage -------------------------------------------------
    def _get_int(self, skey, ns, name):
        return self.objs.get(skey, {}).get((ns or "", name))

    def _record(self, skey, etype, new, old):
        rvs, evs = self.hist.setdefault(skey, ([], []))
        rvs.append(self.rv)
        evs.append((self.rv, etype, new, old))
        self.cond.notify_all()

    def _put(self, skey, ns, name, obj, etype, old):
        self.rv += 1
        m = obj.setdefault("metadata", {})
        m["resourceVersion"] = str(self.rv)
        obj["metadata"] = {k: m[k] for k in META_ORDER if k in m}
        self.objs.setdefault(skey, {})[(ns or "", name)] = obj
        self._record(skey, etype, obj, old)
        return obj

    def _remove(self, skey, ns, name):
        old = self.objs.get(skey, {}).pop((ns or "", name), None)
        if old is None:
            return None
        self.rv += 1
        gone = dc(old)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self.owners.pop((skey, ns or "", name), None)
        self._record(skey, "DELETED", gone, old)
        return gone

    def events_since(self, skey, pos):
        rvs, evs = self.hist.get(skey, ([], []))
        return evs[bisect.bisect_right(rvs, pos):], self.rv

    def iter_objects(self, rt, ns):
        objs = self.objs.get(rt.skey, {})
        for key in sorted(objs):
            if ns is None or key[0] == ns:
                yield objs[key]

    # -- checks --------------------------------------------------------------
    def _validate_name(self, rt, name):
        if rt.is_namespace:
            ok = len(name) <= 63 and _DNS_LABEL.match(name)
            why = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
        else:
            ok = len(name) <= 253 and _DNS_SUBDOMAIN.match(name)
            why = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        if not ok:
            raise invalid(rt, name, "metadata.name", f'Invalid value: "{name}": {why}')

    def _check_namespace(self, rt, ns, name):
        if not rt.namespaced:
            return
        nsobj = self._get_int("/namespaces", "", ns)
        if nsobj is None:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found', ns, "", "namespaces")
        if nsobj["metadata"].get("deletionTimestamp"):
            raise ApiError(403, "Forbidden",
                           f'{rt.qname} "{name}" is forbidden: unable to create new content in namespace {ns} '
                           f'because it is being terminated', name, rt.group, rt.plural)

    def _check_crd_live(self, rt):
        if rt.crd and rt.crd in self.pending_crd:
            raise ApiError(405, "MethodNotAllowed",
                           f"create not allowed while custom resource definition is terminating")

    def _validate_crd(self, rt, name, obj):
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        names = spec.get("names") if isinstance(spec.get("names"), dict) else {}
        for field, val in (("spec.group", spec.get("group")), ("spec.names.plural", names.get("plural")),
                           ("spec.names.kind", names.get("kind"))):
            if not val:
                raise invalid(rt, name, field, "Required value")
        if name != f'{names["plural"]}.{spec["group"]}':
            raise invalid(rt, name, "metadata.name",
                          f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
        if spec.get("scope", "Namespaced") not in ("Namespaced", "Cluster"):
            raise invalid(rt, name, "spec.scope", f'Unsupported value: "{spec.get("scope")}"')
        vers = spec.get("versions")
        if not isinstance(vers, list) or not vers:
            raise invalid(rt, name, "spec.versions", "Invalid value: must have exactly one version marked as storage version")
        if sum(1 for v in vers if isinstance(v, dict) and v.get("storage")) != 1:
            raise invalid(rt, name, "spec.versions", "Invalid value: must have exactly one version marked as storage version")

    # -- the write pipeline ----------------------------------------------
    def _prune_default(self, rt, obj, ctx):
        unknown = []
        prune(obj, rt.root_schema, [], unknown)
        unknown = [u for u in unknown if not u.startswith("metadata")]
        if unknown:
            if ctx.validation == "Strict":
                raise bad_request("strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown))
            if ctx.validation != "Ignore":
                ctx.warnings.extend(f'unknown field "{u}"' for u in unknown)
        apply_defaults(obj, rt.root_schema)

    def _hook(self, rt, new, old):
        if rt.group == "" and rt.plural == "secrets":
            data = new.setdefault("data", {})
            for k, v in (new.pop("stringData", None) or {}).items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            if not data:
                new.pop("data")
            new.setdefault("type", "Opaque")
        if rt.is_namespace:
            new.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            if old is None:
                new["status"] = {"phase": "Active"}
            labels = new["metadata"].setdefault("labels", {})
            labels["kubernetes.io/metadata.name"] = new["metadata"]["name"]
        if rt.is_crd:
            spec = new.get("spec") or {}
            names = dict(spec.get("names") or {})
            names.setdefault("singular", str(names.get("kind", "")).lower())
            names.setdefault("listKind", str(names.get("kind", "")) + "List")
            old_conds = {c.get("type"): c for c in ((old or {}).get("status") or {}).get("conditions") or []
                         if isinstance(c, dict)}
            ts = now_ts()

            def cond(t, reason, msg, status="True"):
                prev = old_conds.get(t)
                keep = prev and prev.get("status") == status
                return {"type": t, "status": status, "lastTransitionTime": prev["lastTransitionTime"] if keep else ts,
                        "reason": reason, "message": msg}

            conds = [cond("NamesAccepted", "NoConflicts", "no conflicts found"),
                     cond("Established", "InitialNamesAccepted", "the initial names have been accepted")]
            if new["metadata"].get("deletionTimestamp"):
                conds.append(cond("Terminating", "InstanceDeletionInProgress", "CustomResource deletion is in progress"))
            stored = [v["name"] for v in spec.get("versions") or [] if isinstance(v, dict) and v.get("storage")]
            prev_stored = ((old or {}).get("status") or {}).get("storedVersions") or []
            new["status"] = {"acceptedNames": names, "conditions": conds,
                             "storedVersions": list(dict.fromkeys(prev_stored + stored))}

    @staticmethod
    def _content(o):
        x = dict(o)
        m = dict(x.get("metadata") or {})
        m.pop("resourceVersion", None)
        m.pop("managedFields", None)
        x["metadata"] = m
        return x

    def _owners_after_update(self, rt, key, old, new, sub, manager):
        cur = {k: {"paths": set(e["paths"]), "time": e["time"], "apiVersion": e["apiVersion"]}
               for k, e in self.owners.get(key, {}).items()}
        nf = flatten(new, rt.root_schema)
        if old is None:
            changed, removed = set(nf), set()
        else:
            of = flatten(old, rt.root_schema)
            changed = {p for p, v in nf.items()
                       if p not in of or (v is not NODE and (of[p] is NODE or not jeq(v, of[p])))}
            removed = set(of) - set(nf)
        if not changed and not removed:
            return cur
        me = (manager, "Update", sub or "")
        for k, e in cur.items():
            if k != me:
                e["paths"] -= changed
            e["paths"] -= removed
        mine = cur.setdefault(me, {"paths": set(), "time": now_ts(), "apiVersion": rt.api_version})
        mine["paths"] |= changed
        mine["time"] = now_ts()
        return {k: e for k, e in cur.items() if e["paths"]}

    @staticmethod
    def _render_managed(owners):
        out = []
        for (manager, op, sub), e in owners.items():
            if not e["paths"]:
                continue
            mf = {"manager": manager, "operation": op, "apiVersion": e["apiVersion"], "time": e["time"],
                  "fieldsType": "FieldsV1", "fieldsV1": fields_v1(e["paths"])}
            if sub:
                mf["subresource"] = sub
            out.append(mf)
        return out

    def _write(self, rt, ns, name, old_int, new, sub, ctx, owners_after=None):
        """Create (old_int None) or update; `new` is a private ext-form copy."""
        creating = old_int is None
        old = None if creating else rt.to_ext(old_int)
        if not isinstance(new, dict):
            raise bad_request("the object must be a JSON object")
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        new["metadata"] = norm_meta(new.get("metadata"))
        if rt.custom:
            self._prune_default(rt, new, ctx)
        meta = new["metadata"]
        if creating:
            for f in SERVER_META:
                meta.pop(f, None)
            meta["name"] = name
            if rt.namespaced:
                meta["namespace"] = ns
            else:
                meta.pop("namespace", None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_ts()
            if rt.generation:
                meta["generation"] = 1
            if rt.status_sub:
                new.pop("status", None)
        else:
            om = old["metadata"]
            if sub == "status":
                st = new.get("status", _MISSING)
                new = dc(old)
                new["metadata"].pop("managedFields", None)
                if st is _MISSING:
                    new.pop("status", None)
                else:
                    new["status"] = st
                meta = new["metadata"]
            else:
                if rt.status_sub:
                    if "status" in old:
                        new["status"] = dc(old["status"])
                    else:
                        new.pop("status", None)
                for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                          "generation", "namespace", "name"):
                    if f in om:
                        meta[f] = om[f]
                    else:
                        meta.pop(f, None)
                if om.get("deletionTimestamp"):
                    added = [f for f in meta.get("finalizers", []) if f not in om.get("finalizers", [])]
                    if added:
                        raise invalid(rt, name, "metadata.finalizers",
                                      f"Forbidden: no new finalizers can be added if the object is being deleted, "
                                      f"found new finalizers {json.dumps(added)}")
                if rt.generation:
                    a = {k: v for k, v in new.items() if k != "metadata"}
                    b = {k: v for k, v in old.items() if k != "metadata"}
                    if not jeq(a, b):
                        meta["generation"] = int(om.get("generation", 0)) + 1
            meta["resourceVersion"] = om["resourceVersion"]
        self._hook(rt, new, old)
        key = (rt.skey, ns or "", name)
        if owners_after is None:
            owners_after = self._owners_after_update(rt, key, old, new, sub, ctx.manager)
        if not creating:
            prev_owners = self.owners.get(key, {})
            same_owners = prev_owners.keys() == owners_after.keys() and all(
                prev_owners[k]["paths"] == owners_after[k]["paths"] for k in prev_owners)
            if same_owners and jeq(self._content(new), self._content(old)):
                return 200, old                                  # no-op: no write, no event
            for k, e in owners_after.items():
                if k in prev_owners and prev_owners[k]["paths"] == e["paths"]:
                    e["time"] = prev_owners[k]["time"]
        managed = self._render_managed(owners_after)
        if managed:
            meta["managedFields"] = managed
        else:
            meta.pop("managedFields", None)
        new["metadata"] = meta = {k: meta[k] for k in META_ORDER if k in meta}
        if ctx.dry_run:
            return (201 if creating else 200), new
        self.owners[key] = owners_after
        if (not creating and meta.get("deletionTimestamp") and not meta.get("finalizers")
                and not rt.is_namespace and not rt.is_crd):
            gone = self._remove(rt.skey, ns, name)
            self._finish_pending()
            return 200, rt.to_ext(gone)
        stored = self._put(rt.skey, ns, name, rt.to_int(new), "ADDED" if creating else "MODIFIED", old_int)
        if rt.is_crd and not meta.get("deletionTimestamp"):
            self._register_crd(stored)
        self._finish_pending()
        return (201 if creating else 200), rt.to_ext(stored)

    # -- verbs ---------------------------------------------------------------
    def get(self, rt, ns, name):
        o = self._get_int(rt.skey, ns, name)
        if o is None:
            raise not_found(rt, name)
        return rt.to_ext(o)

    def check_field_selector(self, rt, reqs):
        if not rt.custom:
            return
        allowed = {"metadata.name", "metadata.namespace"} | set(rt.selectable)
        for key, _op, _v in reqs:
            if key not in allowed:
                raise bad_request(f'"{key}" is not a known field selector: only "metadata.name", "metadata.namespace"')

    def list(self, rt, ns, lsel, fsel):
        items = []
        for o in self.iter_objects(rt, ns):
            x = rt.to_ext(o)
            if labels_match(lsel, x["metadata"].get("labels")) and fields_match(fsel, x):
                items.append(x)
        return items, str(self.rv)

    def list_page(self, rt, ns, lsel, fsel, limit, token):
        """A list in pages, like the API server's ``limit``/``continue``: items
        in key order after the token's last key, at most ``limit`` of them; the
        list's resourceVersion is the first page's (what a watch resumes from),
        and a later page shows the objects as they are now (the real server
        reads that page at the first page's version; a watch from it replays
        every change since, so a client ends up in the same state).
        -> (items, rv, continue token or "", remainingItemCount or None)."""
        rv, after = str(self.rv), None
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
                rv, after = str(state["rv"]), (state["ns"], state["name"])
            except (ValueError, KeyError, TypeError, UnicodeEncodeError):
                raise bad_request("continue key is not valid: invalid continue token")
        if limit and not lsel and not fsel:
            # Without selectors only the page's own objects are converted (a
            # copy each): listing N objects in pages stays linear in N instead
            # of N x pages (10,000 bindings in pages of 500: 200,000 copies).
            objs = self.objs.get(rt.skey, {})
            keys = [k for k in sorted(objs)
                    if (ns is None or k[0] == ns) and (after is None or k > after)]
            items = [rt.to_ext(objs[k]) for k in keys[:limit]]
            remaining = len(keys) - len(items)
        else:
            items = [x for x in self.list(rt, ns, lsel, fsel)[0]
                     if after is None
                     or (x["metadata"].get("namespace") or "", x["metadata"]["name"]) > after]
            remaining = len(items) - limit if limit else 0
        if remaining <= 0:
            return items, rv, "", None
        page, last = items[:limit], items[limit - 1]["metadata"]
        token = base64.urlsafe_b64encode(json.dumps(
            {"rv": rv, "ns": last.get("namespace") or "", "name": last["name"]}).encode()).decode("ascii")
        return page, rv, token, remaining

    def create(self, rt, ns, body, ctx):
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        self._check_kind(rt, body)
        md = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        name = md.get("name")
        if rt.namespaced and md.get("namespace") and md["namespace"] != ns:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if not name and md.get("generateName"):
            for _ in range(100):
                name = md["generateName"] + "".join(random.choice(NAME_CHARS) for _ in range(5))
                if self._get_int(rt.skey, ns, name) is None:
                    break
        if not name:
            raise invalid(rt, "", "metadata.name", "Required value: name or generateName is required")
        self._validate_name(rt, name)
        self._check_namespace(rt, ns, name)
        self._check_crd_live(rt)
        if self._get_int(rt.skey, ns, name) is not None:
            raise ApiError(409, "AlreadyExists", f'{rt.qname} "{name}" already exists', name, rt.group, rt.plural)
        if rt.is_crd:
            self._validate_crd(rt, name, body)
        return self._write(rt, ns, name, None, dc(body), None, ctx)

    def _check_kind(self, rt, body):
        av, kind = body.get("apiVersion"), body.get("kind")
        if kind and kind != rt.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
        if av:
            group = av.rsplit("/", 1)[0] if "/" in av else ""
            if group != rt.group:
                raise bad_request(f"the API version in the data ({av}) does not match the expected API version ({rt.api_version})")

    def replace(self, rt, ns, name, sub, body, ctx):
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        self._check_kind(rt, body)
        md = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        if md.get("name") != name:
            raise bad_request(f"the name of the object ({md.get('name', '')}) does not match the name on the URL ({name})")
        if rt.namespaced and md.get("namespace") and md["namespace"] != ns:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        old_int = self._get_int(rt.skey, ns, name)
        if old_int is None:
            raise not_found(rt, name)
        om = old_int["metadata"]
        rv = md.get("resourceVersion")
        if rv:
            if rv != om["resourceVersion"]:
                raise conflict(rt, name)
        elif not rt.unconditional:
            raise invalid(rt, name, "metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update")
        if md.get("uid") and md["uid"] != om.get("uid"):
            raise conflict(rt, name, f"Precondition failed: UID in precondition: {om.get('uid')}, UID in object meta: {md['uid']}")
        if rt.is_crd and sub is None:
            self._validate_crd(rt, name, body)
        return self._write(rt, ns, name, old_int, dc(body), sub, ctx)

    def patch(self, rt, ns, name, sub, ptype, body_text, ctx):
        if ptype == "application/apply-patch+yaml":
            return self.apply(rt, ns, name, sub, body_text, ctx)
        if ctx.force_given:
            raise ApiError(422, "Invalid",
                           'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for non-apply patch',
                           None, "meta.k8s.io", "PatchOptions",
                           [{"reason": "FieldValueForbidden", "message": "Forbidden: may not be specified for non-apply patch",
                             "field": "force"}])
        try:
            patch = json.loads(body_text or "null")
        except ValueError as e:
            raise bad_request(f"error decoding patch: {e}")
        old_int = self._get_int(rt.skey, ns, name)
        if old_int is None:
            raise not_found(rt, name)
        cur = rt.to_ext(old_int)
        try:
            if ptype == "application/json-patch+json":
                result = json_patch(dc(cur), patch)
            elif ptype == "application/merge-patch+json":
                if not isinstance(patch, dict):
                    raise bad_request("merge patch must be a JSON object")
                result = merge_patch(cur, patch)
            elif ptype == "application/strategic-merge-patch+json":
                if rt.custom:
                    raise ApiError(415, "UnsupportedMediaType",
                                   "the body of the request was in an unknown format - accepted media types include: "
                                   "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
                if not isinstance(patch, dict):
                    raise bad_request("strategic merge patch must be a JSON object")
                result = strategic_merge_patch(cur, patch)
            else:
                raise ApiError(415, "UnsupportedMediaType",
                               f"the body of the request was in an unknown format - accepted media types include: "
                               f"application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
        except PatchFormatError as e:
            raise bad_request(str(e))
        except PatchError as e:
            raise ApiError(422, "Invalid", str(e), name, rt.group, rt.kind)
        if not isinstance(result, dict):
            raise bad_request("the patched object is not a JSON object")
        md = result.get("metadata") if isinstance(result.get("metadata"), dict) else {}
        if md.get("resourceVersion") and md["resourceVersion"] != cur["metadata"]["resourceVersion"]:
            raise conflict(rt, name)
        if md.get("name", name) != name:
            raise bad_request(f"the name of the object ({md.get('name')}) does not match the name on the URL ({name})")
        if rt.is_crd and sub is None:
            self._validate_crd(rt, name, result)
        return self._write(rt, ns, name, old_int, result, sub, ctx)

    def apply(self, rt, ns, name, sub, body_text, ctx):
        if not ctx.manager_param:
            raise ApiError(422, "Invalid",
                           'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
                           None, "meta.k8s.io", "PatchOptions",
                           [{"reason": "FieldValueRequired", "message": "Required value: is required for apply patch",
                             "field": "fieldManager"}])
        try:
            applied = json.loads(body_text)
        except ValueError:
            if yaml is None:
                raise bad_request("YAML apply bodies need PyYAML on the emulator side; send JSON")
            try:
                applied = yaml.load(body_text, Loader=_YamlLoader)
            except yaml.YAMLError as e:
                raise bad_request(f"error decoding YAML: {e}")
        if not isinstance(applied, dict):
            raise bad_request("apply patch must be an object")
        if not applied.get("apiVersion"):
            raise bad_request("apiVersion must be set in the applied object")
        if not applied.get("kind"):
            raise bad_request("kind must be set in the applied object")
        self._check_kind(rt, applied)
        amd = applied.get("metadata") if isinstance(applied.get("metadata"), dict) else {}
        if amd.get("name") and amd["name"] != name:
            raise bad_request(f"the name of the object ({amd['name']}) does not match the name on the URL ({name})")
        if rt.namespaced and amd.get("namespace") and amd["namespace"] != ns:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        old_int = self._get_int(rt.skey, ns, name)
        if old_int is None:
            if sub is not None:
                raise not_found(rt, name)
            self._validate_name(rt, name)
            self._check_namespace(rt, ns, name)
            self._check_crd_live(rt)
        elif amd.get("resourceVersion") and amd["resourceVersion"] != old_int["metadata"]["resourceVersion"]:
            raise conflict(rt, name)
        cfg = {k: dc(v) for k, v in applied.items() if k not in ("apiVersion", "kind", "metadata")}
        tracked = {k: dc(amd[k]) for k in TRACKED_META if k in amd and amd[k] is not None}
        if tracked:
            cfg["metadata"] = tracked
        if rt.custom:
            unknown = []
            prune(cfg, rt.root_schema, [], unknown)
            unknown = [u for u in unknown if not u.startswith("metadata")]
            if unknown and ctx.validation == "Strict":
                raise bad_request("strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown))
            if unknown and ctx.validation != "Ignore":
                ctx.warnings.extend(f'unknown field "{u}"' for u in unknown)
        if sub == "status":
            cfg = {"status": cfg["status"]} if "status" in cfg else {}
        elif rt.status_sub:
            cfg.pop("status", None)
        schema = rt.root_schema
        base = rt.to_ext(old_int) if old_int is not None else {
            "apiVersion": rt.api_version, "kind": rt.kind,
            "metadata": {"name": name, **({"namespace": ns} if rt.namespaced else {})}}
        base["metadata"].pop("managedFields", None)
        key = (rt.skey, ns or "", name)
        owners = {k: {"paths": set(e["paths"]), "time": e["time"], "apiVersion": e["apiVersion"]}
                  for k, e in self.owners.get(key, {}).items()}
        me = (ctx.manager, "Apply", sub or "")
        af = flatten(cfg, schema)
        bf = flatten(base, schema)
        conflicts = []
        for p, v in af.items():
            if v is NODE or p not in bf or (bf[p] is not NODE and jeq(bf[p], v)):
                continue
            others = [k for k, e in owners.items() if k != me and p in e["paths"]]
            if not others:
                continue
            if ctx.force:
                for k in others:
                    owners[k]["paths"].discard(p)
            else:
                conflicts.extend((p, k) for k in others)
        if conflicts:
            causes = [{"type": "FieldManagerConflict", "message": f'conflict with "{k[0]}": {path_str(p)}',
                       "field": path_str(p)} for p, k in conflicts]
            n = len(conflicts)
            msg = f"Apply failed with {n} conflict{'s' if n > 1 else ''}: " + "; ".join(c["message"] for c in causes)
            raise ApiError(409, "Conflict", msg, name, rt.group, rt.plural, causes)
        merged = ssa_merge(base, cfg, schema)
        prev = owners.get(me, {}).get("paths", set())
        new_paths = set(af)
        others_paths = set()
        for k, e in owners.items():
            if k != me:
                others_paths |= e["paths"]
        # Shallow first: an item of a list map goes whole, before its key
        # fields would be removed one by one (which left a keyless remnant).
        for p in sorted(prev - new_paths, key=len):
            if p == (("f", "metadata"),):
                continue
            if any(q[:len(p)] == p for q in others_paths):
                continue
            remove_path(merged, p)
        if new_paths:
            owners[me] = {"paths": new_paths, "time": now_ts(), "apiVersion": rt.api_version}
        else:
            owners.pop(me, None)
        owners = {k: e for k, e in owners.items() if e["paths"]}
        if rt.is_crd and sub is None:
            self._validate_crd(rt, name, merged)
        return self._write(rt, ns, name, old_int, merged, sub, ctx, owners_after=owners)

    def _mark_deleting(self, skey, ns, name, obj, extra=None):
        new = dc(obj)
        m = new["metadata"]
        if m.get("deletionTimestamp"):
            return obj
        if m.get("generation"):
            m["generation"] = int(m["generation"]) + 1
        m["deletionTimestamp"] = now_ts()
        m["deletionGracePeriodSeconds"] = 0
        if extra:
            extra(new)
        return self._put(skey, ns, name, new, "MODIFIED", obj)

    def delete(self, rt, ns, name, opts, ctx):
        o = self._get_int(rt.skey, ns, name)
        if o is None:
            raise not_found(rt, name)
        pre = opts.get("preconditions") if isinstance(opts.get("preconditions"), dict) else {}
        m = o["metadata"]
        if pre.get("uid") and pre["uid"] != m.get("uid"):
            raise conflict(rt, name, f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {m.get('uid')}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != m.get("resourceVersion"):
            raise conflict(rt, name, f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                                     f"ResourceVersion in object meta: {m.get('resourceVersion')}")
        if ctx.dry_run:
            return 200, rt.to_ext(o)
        if rt.is_namespace:
            def terminating(x):
                x.setdefault("status", {})["phase"] = "Terminating"
            o = self._mark_deleting(rt.skey, None, name, o, terminating)
            self.pending_ns.add(name)
            for skey, objs in list(self.objs.items()):
                for (ons, oname) in [k for k in objs if k[0] == name]:
                    self._delete_stored(skey, ons, oname)
            self._finish_pending()
            cur = self._get_int(rt.skey, None, name)
            return 200, rt.to_ext(cur if cur is not None else o)
        if rt.is_crd:
            before = rt.to_ext(o)
            o = self._mark_deleting(rt.skey, None, name, o, lambda x: self._hook(rt, x, before))
            self.pending_crd.add(name)
            skeys = {t.skey for t in self._crd_rtypes(name)}
            for skey in skeys:
                for (ons, oname) in list(self.objs.get(skey, {})):
                    self._delete_stored(skey, ons, oname)
            self._finish_pending()
            cur = self._get_int(rt.skey, None, name)
            return 200, rt.to_ext(cur if cur is not None else o)
        if m.get("finalizers"):
            o = self._mark_deleting(rt.skey, ns, name, o)
            return 200, rt.to_ext(o)
        gone = self._remove(rt.skey, ns, name)
        self._finish_pending()
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                     "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": gone["metadata"].get("uid")}}

    def _delete_stored(self, skey, ns, name):
        o = self._get_int(skey, ns, name)
        if o is None:
            return
        if o["metadata"].get("finalizers"):
            self._mark_deleting(skey, ns, name, o)
        else:
            self._remove(skey, ns, name)

    def _finish_pending(self):
        for ns in list(self.pending_ns):
            nsobj = self._get_int("/namespaces", "", ns)
            if nsobj is None:
                self.pending_ns.discard(ns)
                continue
            if any(k[0] == ns for skey, objs in self.objs.items() if skey != "/namespaces" for k in objs):
                continue
            if nsobj["metadata"].get("finalizers"):
                continue
            self.pending_ns.discard(ns)
            self._remove("/namespaces", "", ns)
        for crd in list(self.pending_crd):
            crdobj = self._get_int("apiextensions.k8s.io/customresourcedefinitions", "", crd)
            if crdobj is None:
                self.pending_crd.discard(crd)
                self._unregister_crd(crd)
                continue
            skeys = {t.skey for t in self._crd_rtypes(crd)}
            if any(self.objs.get(s) for s in skeys) or crdobj["metadata"].get("finalizers"):
                continue
            self.pending_crd.discard(crd)
            self._unregister_crd(crd)
            self._remove("apiextensions.k8s.io/customresourcedefinitions", "", crd)

    def delete_collection(self, rt, ns, lsel, fsel, opts, ctx):
        items, _ = self.list(rt, ns, lsel, fsel)
        out = []
        for x in items:
            m = x["metadata"]
            try:
                _code, res = self.delete(rt, m.get("namespace"), m["name"], opts, ctx)
            except ApiError:
                continue
            out.append(res if res.get("kind") != "Status" else x)
        return out


# ---------------------------------------------------------------------------
# content negotiation, tables

def parse_accept(header):
    """-> list of (mime, params) in the client's order."""
    out = []
    for part in (header or "").split(","):
        part = part.strip()
        if not part:
            continue
        bits = [b.strip() for b in part.split(";")]
        params = {}
        for b in bits[1:]:
            if "=" in b:
                k, v = b.split("=", 1)
                params[k.strip()] = v.strip()
        out.append((bits[0].lower(), params))
    return out


def negotiate(header, allow_meta):
    """-> ("json",), ("table", version), ("pom", version) or None (406)."""
    accepts = parse_accept(header)
    if not accepts:
        return ("json",)
    for mime, params in accepts:
        if mime not in ("application/json", "application/*", "*/*"):
            continue
        as_ = params.get("as")
        if as_ is None:
            return ("json",)
        if not allow_meta or params.get("g") != "meta.k8s.io" or params.get("v") not in ("v1", "v1beta1"):
            continue
        if as_ == "Table":
            return ("table", params["v"])
        if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            return ("pom", params["v"])
    return None


def pom(x, version="v1"):
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}", "metadata": x.get("metadata", {})}


def make_table(rt, objs, rv, version="v1", include="Metadata"):
    now = datetime.now(timezone.utc)
    cols = [{"name": "Name", "type": "string", "format": "name",
             "description": "Name must be unique within a namespace. Is required when creating resources, although "
                            "some resources may allow a client to request the generation of an appropriate name "
                            "automatically. Name is primarily intended for creation idempotence and configuration "
                            "definition. Cannot be updated.",
             "priority": 0}]
    for c in rt.columns:
        cols.append({"name": c.get("name", ""), "type": c.get("type", "string"), "format": c.get("format", ""),
                     "description": c.get("description", ""), "priority": int(c.get("priority", 0) or 0)})
    rows = []
    for x in objs:
        row = {"cells": [x["metadata"].get("name")] + [column_cell(c, x, now) for c in rt.columns]}
        if include == "Object":
            row["object"] = x
        elif include != "None":
            row["object"] = pom(x, version)
        rows.append(row)
    return {"kind": "Table", "apiVersion": f"meta.k8s.io/{version}", "metadata": {"resourceVersion": rv},
            "columnDefinitions": cols, "rows": rows}


# ---------------------------------------------------------------------------
# protobuf request bodies (kubectl's typed "create" commands send them)

def _varint(buf, i):
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _pb_fields(buf):
    i, out = 0, []
    while i < len(buf):
        key, i = _varint(buf, i)
        fn, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wt}")
        out.append((fn, v))
    return out


_PB_TIME = "time"
_PB_OWNER = {1: ("kind", "str"), 3: ("name", "str"), 4: ("uid", "str"), 5: ("apiVersion", "str"),
             6: ("controller", "bool"), 7: ("blockOwnerDeletion", "bool")}
_PB_META = {1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"), 5: ("uid", "str"),
            6: ("resourceVersion", "str"), 7: ("generation", "int"), 8: ("creationTimestamp", _PB_TIME),
            9: ("deletionTimestamp", _PB_TIME), 10: ("deletionGracePeriodSeconds", "int"),
            11: ("labels", "map:str"), 12: ("annotations", "map:str"), 13: ("ownerReferences", ("list", _PB_OWNER)),
            14: ("finalizers", "list:str")}
PB_KINDS = {
    ("", "v1", "Namespace"): {1: ("metadata", _PB_META), 2: ("spec", {1: ("finalizers", "list:str")}),
                              3: ("status", {1: ("phase", "str")})},
    ("", "v1", "ConfigMap"): {1: ("metadata", _PB_META), 2: ("data", "map:str"), 3: ("binaryData", "map:bytes"),
                              4: ("immutable", "bool")},
    ("", "v1", "Secret"): {1: ("metadata", _PB_META), 2: ("data", "map:bytes"), 3: ("type", "str"),
                           4: ("stringData", "map:str"), 5: ("immutable", "bool")},
}


def _pb_scalar(v, typ):
    if typ == "str":
        return v.decode("utf-8")
    if typ == "bytes":
        return base64.b64encode(v).decode()
    if typ == "bool":
        return bool(v)
    if typ == "int":
        return v - (1 << 64) if v >= 1 << 63 else v
    raise ValueError(typ)


def _pb_message(buf, schema):
    out = {}
    for fn, v in _pb_fields(buf):
        if fn not in schema:
            continue
        name, typ = schema[fn]
        if isinstance(typ, dict):
            out[name] = _pb_message(v, typ)
        elif typ == _PB_TIME:
            f = dict(_pb_fields(v))
            secs = _pb_scalar(f.get(1, 0), "int")
            out[name] = datetime.fromtimestamp(secs, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        elif isinstance(typ, tuple):
            out.setdefault(name, []).append(_pb_message(v, typ[1]))
        elif typ.startswith("list:"):
            out.setdefault(name, []).append(_pb_scalar(v, typ[5:]))
        elif typ.startswith("map:"):
            f = dict(_pb_fields(v))
            out.setdefault(name, {})[f.get(1, b"").decode()] = _pb_scalar(f.get(2, b""), typ[4:])
        else:
            out[name] = _pb_scalar(v, typ)
    return {k: v for k, v in out.items() if v not in ("", {}, [])}


def decode_protobuf(body, rt):
    """The k8s protobuf envelope (magic + runtime.Unknown) of a kind in PB_KINDS."""
    if body[:4] != b"k8s\x00":
        raise bad_request("protobuf body without the k8s envelope")
    unknown = dict(_pb_fields(body[4:]))
    tm = dict(_pb_fields(unknown.get(1, b"")))
    av, kind = tm.get(1, b"").decode() or rt.api_version, tm.get(2, b"").decode() or rt.kind
    group, _, version = av.rpartition("/")
    schema = PB_KINDS.get((group, version, kind))
    if schema is None:
        raise ApiError(415, "UnsupportedMediaType",
                       f"the emulator cannot decode protobuf {kind}; send application/json")
    obj = _pb_message(unknown.get(2, b""), schema)
    obj["apiVersion"], obj["kind"] = av, kind
    return obj


# ---------------------------------------------------------------------------
# OpenAPI v3 (minimal)

def _schema_name(rt):
    g = ".".join(reversed(rt.group.split("."))) if rt.group else "io.k8s.api.core"
    return f"{g}.{rt.version}.{rt.kind}"


def openapi_gv_doc(rts):
    params = [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
              for n in ("dryRun", "fieldManager", "fieldValidation", "force")]
    paths, schemas = {}, {}
    for rt in rts:
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        sname = _schema_name(rt)
        ref = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{sname}"}}},
               "description": "OK"}
        prefix = f"/apis/{rt.group}/{rt.version}" if rt.group else "/api/v1"
        base = f"{prefix}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{prefix}/{rt.plural}"
        op = {"x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {"200": ref}}
        paths[base] = {"get": {**op, "x-kubernetes-action": "list", "parameters": []},
                       "post": {**op, "x-kubernetes-action": "post"}}
        item = {"get": {**op, "x-kubernetes-action": "get", "parameters": []},
                "put": {**op, "x-kubernetes-action": "put"},
                "patch": {**op, "x-kubernetes-action": "patch"},
                "delete": {**op, "x-kubernetes-action": "delete", "parameters": []}}
        paths[f"{base}/{{name}}"] = item
        if rt.status_sub:
            paths[f"{base}/{{name}}/status"] = {k: dict(v) for k, v in item.items() if k != "delete"}
        schema = dc(rt.schema) if isinstance(rt.schema, dict) else {"type": "object"}
        props = schema.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props["metadata"] = {"type": "object"}
        schema["x-kubernetes-group-version-kind"] = [gvk]
        schemas[sname] = schema
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": GIT_VERSION},
            "paths": paths, "components": {"schemas": schemas}}


# ---------------------------------------------------------------------------
# HTTP

def _query(raw):
    q = {}
    for k, vs in parse_qs(raw, keep_blank_values=True).items():
        q[k] = vs[-1]
    return q


def _truthy(v):
    return str(v).lower() in ("true", "1")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-emulator/1"
    sys_version = ""

    def log_message(self, fmt, *args):  # noqa: N802 - stdlib name
        log("%s - %s" % (self.address_string(), fmt % args))

    def do_GET(self):  # noqa: N802
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def do_PUT(self):  # noqa: N802
        self._handle("PUT")

    def do_PATCH(self):  # noqa: N802
        self._handle("PATCH")

    def do_DELETE(self):  # noqa: N802
        self._handle("DELETE")

    def do_HEAD(self):  # noqa: N802
        self._handle("HEAD")

    # -- plumbing ------------------------------------------------------------
    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, code, data, ctype="application/json", warnings=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for w in warnings:
            self.send_header("Warning", '299 - "%s"' % w.replace('"', '\\"'))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, code, obj, warnings=()):
        self._send(code, json.dumps(obj, separators=(",", ":")).encode(), warnings=warnings)

    def _handle(self, method):
        cluster = self.server.cluster
        try:
            body = self._read_body()
            u = urlsplit(self.path)
            q = _query(u.query)
            self.dispatch(cluster, method, u.path, q, body)
        except ApiError as e:
            self.send_json(e.code, e.status())
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001
            sys.stderr.write(f"[kube-emulator] internal error on {method} {self.path}\n{traceback.format_exc()}")
            sys.stderr.flush()
            try:
                self.send_json(500, ApiError(500, "InternalError", f"internal error: {e}").status())
            except OSError:
                self.close_connection = True

    # -- routing -------------------------------------------------------------
    def dispatch(self, cluster, method, path, q, body):
        if path in ("/healthz", "/readyz", "/livez") or re.match(r"^/(healthz|readyz|livez)/", path):
            return self._send(200, b"ok", "text/plain; charset=utf-8")
        if path == "/version":
            return self.send_json(200, {"major": "1", "minor": "33", "emulationMajor": "1", "emulationMinor": "33",
                                        "minCompatibilityMajor": "1", "minCompatibilityMinor": "32",
                                        "gitVersion": GIT_VERSION, "gitCommit": "0000000000000000000000000000000000000000",
                                        "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z",
                                        "goVersion": "go1.24.2", "compiler": "gc", "platform": "linux/amd64"})
        if path == "/_emulator/objects":
            with cluster.lock:
                items = []
                for skey in sorted(cluster.objs):
                    for k in sorted(cluster.objs[skey]):
                        items.append(dc(cluster.objs[skey][k]))
                return self.send_json(200, {"kind": "List", "apiVersion": "v1",
                                            "metadata": {"resourceVersion": str(cluster.rv)}, "items": items})
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["openapi", "v3"]:
            return self.openapi_v3(cluster, "/".join(parts[2:]))
        if not parts or parts[0] not in ("api", "apis"):
            raise not_found_path()
        if parts[0] == "api":
            if len(parts) == 1:
                return self.discovery(cluster, "api", None, None)
            if parts[1] != "v1":
                raise not_found_path()
            if len(parts) == 2:
                return self.discovery(cluster, "gv", "", "v1")
            return self.resource(cluster, method, "", "v1", parts[2:], q, body)
        if len(parts) == 1:
            return self.discovery(cluster, "apis", None, None)
        if len(parts) == 2:
            return self.discovery(cluster, "group", parts[1], None)
        if len(parts) == 3:
            return self.discovery(cluster, "gv", parts[1], parts[2])
        return self.resource(cluster, method, parts[1], parts[2], parts[3:], q, body)

    def discovery(self, cluster, what, group, version):
        if self.command not in ("GET", "HEAD"):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if negotiate(self.headers.get("Accept"), False) is None:
            raise ApiError(406, "NotAcceptable", "only the following media types are accepted: application/json")
        with cluster.lock:
            gvs = cluster.group_versions()
            if what == "api":
                host = self.headers.get("Host") or "127.0.0.1"
                return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})

            def group_entry(g):
                vs = gvs[g]
                return {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                        "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}

            if what == "apis":
                builtin = ["apiextensions.k8s.io", "coordination.k8s.io", "events.k8s.io"]
                names = [g for g in builtin if g in gvs] + sorted(g for g in gvs if g and g not in builtin)
                return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                            "groups": [group_entry(g) for g in names]})
            if what == "group":
                if group not in gvs or not group:
                    raise not_found_path()
                return self.send_json(200, {"kind": "APIGroup", "apiVersion": "v1", **group_entry(group)})
            rts = [rt for (g, v, _p), rt in sorted(cluster.types.items()) if g == group and v == version]
            if not rts:
                raise not_found_path()
            resources = []
            for rt in rts:
                r = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                     "kind": rt.kind, "verbs": VERBS}
                if rt.short_names:
                    r["shortNames"] = rt.short_names
                if rt.categories:
                    r["categories"] = rt.categories
                resources.append(r)
                if rt.status_sub:
                    resources.append({"name": f"{rt.plural}/status", "singularName": "", "namespaced": rt.namespaced,
                                      "kind": rt.kind, "verbs": ["get", "patch", "update"]})
            gv = f"{group}/{version}" if group else version
            return self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                                        "resources": resources})

    def openapi_v3(self, cluster, gv_path):
        """Just enough OpenAPI v3 for kubectl: the PATCH operations of every
        kind advertise fieldValidation (so kubectl leaves validation to the
        server) and custom kinds carry their CRD schema."""
        if self.command not in ("GET", "HEAD"):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        with cluster.lock:
            docs = {}
            for (g, v, _p), rt in sorted(cluster.types.items()):
                key = f"apis/{g}/{v}" if g else "api/v1"
                docs.setdefault(key, []).append(rt)
            if not gv_path:
                paths = {}
                for key, rts in docs.items():
                    digest = uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(openapi_gv_doc(rts), sort_keys=True)).hex
                    paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest.upper()}"}
                return self.send_json(200, {"paths": paths})
            if gv_path not in docs:
                raise not_found_path()
            return self.send_json(200, openapi_gv_doc(docs[gv_path]))

    def resource(self, cluster, method, group, version, rest, q, body):
        watch_prefix = False
        if rest and rest[0] == "watch":
            watch_prefix, rest = True, rest[1:]
        ns = None
        with cluster.lock:
            if len(rest) >= 3 and rest[0] == "namespaces":
                rt3 = cluster.lookup(group, version, rest[2])
                if rt3 is not None and rt3.namespaced:
                    ns, rest = rest[1], rest[2:]
            rt = cluster.lookup(group, version, rest[0]) if rest else None
        if rt is None or len(rest) > 3:
            raise not_found_path()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and not (sub == "status" and rt.status_sub):
            raise not_found_path()
        if (rt.namespaced and name is not None and ns is None) or (not rt.namespaced and ns is not None):
            raise not_found_path()
        fmt = negotiate(self.headers.get("Accept"), method in ("GET", "HEAD"))
        if fmt is None:
            raise ApiError(406, "NotAcceptable",
                           "only the following media types are accepted: application/json, application/yaml")
        agent = (self.headers.get("User-Agent") or "unknown").split("/")[0][:128] or "unknown"
        ctx = Ctx(manager=q.get("fieldManager") or agent, manager_param=bool(q.get("fieldManager")),
                  dry_run=q.get("dryRun") == "All", validation=q.get("fieldValidation") or "Warn",
                  force=_truthy(q.get("force", "")), force_given="force" in q)
        if ctx.validation not in ("Strict", "Warn", "Ignore"):
            raise bad_request(f"invalid fieldValidation value: {ctx.validation}")
        if method in ("GET", "HEAD"):
            if watch_prefix or _truthy(q.get("watch", "")):
                return self.serve_watch(cluster, rt, ns, name, q, fmt)
            with cluster.lock:
                if name is not None:
                    x = cluster.get(rt, ns, name)
                    if fmt[0] == "table":
                        return self.send_json(200, make_table(rt, [x], x["metadata"].get("resourceVersion", ""),
                                                              fmt[1], q.get("includeObject", "Metadata")))
                    if fmt[0] == "pom":
                        return self.send_json(200, pom(x, fmt[1]))
                    return self.send_json(200, x)
                lsel = parse_label_selector(q.get("labelSelector"))
                fsel = parse_field_selector(q.get("fieldSelector"))
                cluster.check_field_selector(rt, fsel)
                try:
                    limit = int(q.get("limit") or 0)
                except ValueError:
                    raise bad_request(f"invalid limit: {q.get('limit')}")
                items, rv, token, remaining = cluster.list_page(
                    rt, ns, lsel, fsel, max(limit, 0), q.get("continue"))
            list_meta = {"resourceVersion": rv}
            if token:
                list_meta["continue"] = token
                list_meta["remainingItemCount"] = remaining
            if fmt[0] == "table":
                table = make_table(rt, items, rv, fmt[1], q.get("includeObject", "Metadata"))
                table["metadata"] = list_meta
                return self.send_json(200, table)
            if fmt[0] == "pom":
                return self.send_json(200, {"kind": "PartialObjectMetadataList", "apiVersion": f"meta.k8s.io/{fmt[1]}",
                                            "metadata": list_meta, "items": [pom(x, fmt[1]) for x in items]})
            return self.send_json(200, {"apiVersion": rt.api_version, "kind": rt.list_kind,
                                        "metadata": list_meta, "items": items})
        text = body.decode("utf-8", "replace") if body else ""
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        if method in ("POST", "PUT") and ctype == "application/vnd.kubernetes.protobuf":
            try:
                pb_obj = decode_protobuf(body, rt)
            except (ValueError, UnicodeDecodeError) as e:
                raise bad_request(f"cannot decode protobuf body: {e}")
            text, ctype = json.dumps(pb_obj), "application/json"
        if method in ("POST", "PUT") and ctype not in ("application/json", "application/yaml", "*/*", ""):
            raise ApiError(415, "UnsupportedMediaType",
                           f'the body of the request was in an unknown format - accepted media types include: '
                           f'application/json, application/yaml')

        def decode():
            if not text.strip():
                return {}
            try:
                return json.loads(text)
            except ValueError:
                if ctype == "application/yaml" and yaml is not None:
                    return yaml.load(text, Loader=_YamlLoader)
                raise bad_request("the body of the request could not be decoded as JSON")

        with cluster.lock:
            if method == "POST":
                if name is not None:
                    raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
                if rt.namespaced and ns is None:
                    raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
                code, obj = cluster.create(rt, ns, decode(), ctx)
            elif method == "PUT":
                if name is None:
                    raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
                code, obj = cluster.replace(rt, ns, name, sub, decode(), ctx)
            elif method == "PATCH":
                if name is None:
                    raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
                code, obj = cluster.patch(rt, ns, name, sub, ctype, text, ctx)
            elif method == "DELETE":
                opts = decode() if text.strip() else {}
                if not isinstance(opts, dict):
                    raise bad_request("DeleteOptions must be a JSON object")
                if q.get("dryRun") == "All" or opts.get("dryRun") == ["All"]:
                    ctx.dry_run = True
                if name is None:
                    lsel = parse_label_selector(q.get("labelSelector"))
                    fsel = parse_field_selector(q.get("fieldSelector"))
                    cluster.check_field_selector(rt, fsel)
                    items = cluster.delete_collection(rt, ns, lsel, fsel, opts, ctx)
                    code, obj = 200, {"apiVersion": rt.api_version, "kind": rt.list_kind,
                                      "metadata": {"resourceVersion": str(cluster.rv)}, "items": items}
                elif sub is not None:
                    raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
                else:
                    code, obj = cluster.delete(rt, ns, name, opts, ctx)
            else:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if fmt[0] == "table" and obj.get("kind") != "Status":
            obj = make_table(rt, [obj], obj.get("metadata", {}).get("resourceVersion", ""), fmt[1])
        self.send_json(code, obj, ctx.warnings)

    # -- watch ---------------------------------------------------------------
    def _client_gone(self):
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if r:
                return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True
        return False

    def _chunk(self, obj):
        data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def serve_watch(self, cluster, rt, ns, name, q, fmt):
        lsel = parse_label_selector(q.get("labelSelector"))
        fsel = parse_field_selector(q.get("fieldSelector"))
        if name is not None:
            fsel.append(("metadata.name", "=", name))
        try:
            timeout = float(q.get("timeoutSeconds") or 0) or WATCH_DEFAULT_TIMEOUT
        except ValueError:
            raise bad_request(f"invalid timeoutSeconds: {q.get('timeoutSeconds')}")
        bookmarks = _truthy(q.get("allowWatchBookmarks", ""))
        initial_events = _truthy(q.get("sendInitialEvents", ""))
        rv = q.get("resourceVersion", "")
        include = q.get("includeObject", "Metadata")

        def match(x):
            return ((ns is None or x["metadata"].get("namespace") == ns)
                    and labels_match(lsel, x["metadata"].get("labels")) and fields_match(fsel, x))

        with cluster.lock:
            cluster.check_field_selector(rt, fsel)
            initial = []
            if initial_events or rv in ("", "0"):
                for o in cluster.iter_objects(rt, ns):
                    x = rt.to_ext(o)
                    if match(x):
                        initial.append(x)
                pos = cluster.rv
            else:
                try:
                    pos = int(rv)
                except ValueError:
                    raise bad_request(f"invalid resource version: {rv!r}")
        start_pos = pos

        def render(x):
            if fmt[0] == "table":
                return make_table(rt, [x], x["metadata"].get("resourceVersion", ""), fmt[1], include)
            if fmt[0] == "pom":
                return pom(x, fmt[1])
            return x

        def bookmark(at, initial_end=False):
            meta = {"resourceVersion": str(at)}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return {"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}}

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        try:
            for x in initial:
                self._chunk({"type": "ADDED", "object": render(x)})
            if initial_events:
                self._chunk(bookmark(start_pos, True))
            deadline = time.monotonic() + timeout
            last_bookmark = time.monotonic()
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                with cluster.cond:
                    evs, upto = cluster.events_since(rt.skey, pos)
                    if not evs:
                        cluster.cond.wait(min(deadline - now, BOOKMARK_INTERVAL))
                        evs, upto = cluster.events_since(rt.skey, pos)
                    out = []
                    for _erv, etype, new, old in evs:
                        xn = rt.to_ext(new)
                        if etype == "ADDED":
                            t = "ADDED" if match(xn) else None
                        elif etype == "DELETED":
                            t = "DELETED" if match(xn) else None
                        else:
                            mn, mo = match(xn), match(rt.to_ext(old))
                            t = "MODIFIED" if mn and mo else "ADDED" if mn else "DELETED" if mo else None
                        if t:
                            out.append({"type": t, "object": render(xn)})
                for ev in out:
                    self._chunk(ev)
                pos = max(pos, upto)
                if bookmarks and time.monotonic() - last_bookmark >= BOOKMARK_INTERVAL:
                    self._chunk(bookmark(pos))
                    last_bookmark = time.monotonic()
                if self._client_gone():
                    self.close_connection = True
                    return
            if bookmarks:
                self._chunk(bookmark(pos))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout, OSError) as e:
            log(f"watch ended: {e!r}")
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, cluster):
        self.cluster = cluster
        super().__init__(addr, Handler)


# ---------------------------------------------------------------------------
# main

def write_kubeconfig(path, port):
    text = (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: emulator\n"
        "  cluster:\n"
        f"    server: http://127.0.0.1:{port}\n"
        "users:\n"
        "- name: emulator\n"
        "  user: {}\n"
        "contexts:\n"
        "- name: emulator\n"
        "  context:\n"
        "    cluster: emulator\n"
        "    user: emulator\n"
        "    namespace: default\n"
        "current-context: emulator\n"
        "preferences: {}\n"
    )
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def preload_crds(cluster, files):
    crd_rt = cluster.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    ctx = Ctx(manager="kube-emulator")
    for path in files:
        with open(path, encoding="utf-8") as f:
            docs = load_documents(f.read())
        for d in docs:
            if d.get("kind") != "CustomResourceDefinition":
                continue
            name = (d.get("metadata") or {}).get("name")
            with cluster.lock:
                existing = cluster._get_int(crd_rt.skey, None, name)
                if existing is None:
                    cluster.create(crd_rt, None, d, ctx)
                else:
                    body = dc(d)
                    body.setdefault("metadata", {})["resourceVersion"] = existing["metadata"]["resourceVersion"]
                    cluster.replace(crd_rt, None, name, None, body, ctx)


def main(argv=None):
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to bind (port 0 = a free port)")
    ap.add_argument("--kubeconfig", help="write a kubeconfig for this server here")
    ap.add_argument("--crd", action="append", default=[], help="YAML/JSON file with CRDs to register (repeatable)")
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = ap.parse_args(argv)
    VERBOSE = args.verbose
    host, _, port = args.listen.rpartition(":")
    cluster = Cluster()
    try:
        preload_crds(cluster, args.crd)
    except ApiError as e:
        sys.stderr.write(f"kube-emulator: CRD rejected: {e.message}\n")
        return 2
    except (OSError, ValueError) as e:
        sys.stderr.write(f"kube-emulator: cannot load CRDs: {e}\n")
        return 2
    server = Server((host or "127.0.0.1", int(port or 0)), cluster)
    real_port = server.server_address[1]
    if args.kubeconfig:
        write_kubeconfig(args.kubeconfig, real_port)
    stop = threading.Event()

    def on_signal(_sig, _frm):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    sys.stdout.write(f"READY {real_port}\n")
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
