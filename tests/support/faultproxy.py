#!/usr/bin/env python3
"""Fault-injection HTTP proxy between the AWS SDK and a local moto_server.

Usage:
    python3 faultproxy.py --upstream http://127.0.0.1:MOTOPORT \
        [--listen 127.0.0.1:0] [--seed N] [--config JSON|@file] [--verbose]

Prints exactly one line ``READY <port>`` on stdout once listening, then stays
quiet until killed (SIGTERM / SIGINT exit with status 0).

Every request is forwarded to the upstream, except the control API under
``/_fault/`` (JSON in / JSON out):

    POST /_fault/config   merge JSON object into the config, answers the config
    GET  /_fault/config   current config
    GET  /_fault/calls    {"calls": [{service, action, status, fault, t}, ...]}
    POST /_fault/reset    clear call log, creation times, config -> defaults
                          (optional body {"seed": N} re-seeds; otherwise the
                          random generator restarts from the current seed)
    GET  /_fault/health   {"ok": true}

Config keys (POST /_fault/config merges; unknown keys -> HTTP 400):
    propagation_seconds [0]   EC2 Associate/ReplaceIamInstanceProfileAssociation
                              naming a profile created less than this long ago
                              -> 400 InvalidParameterValue (not forwarded)
    iam_read_lag_seconds [0]  GetInstanceProfile -> 404 NoSuchEntity and list
                              responses omit the profile for this long
    error_rate [0.0], fault_kinds [all], fault_actions [null], fault_services
        [null], latency_ms [200]
                              random faults: throttle, 500, 503, reset_before,
                              reset_after, latency
    scripted_faults [[]]      deterministic faults consumed before random ones:
                              [{"kind", "action"?, "service"?, "count"=1}];
                              scripted-only kinds (never drawn at random):
                              access_denied (403 in the service's format),
                              html_502 (a load balancer's HTML 502 page, not
                              forwarded), hang (wait hang_seconds, then
                              forward and answer: a call AWS sits on)
    hang_seconds [300]        how long a "hang" fault holds the request
    page_size [null]          proxy-side paging of ListInstanceProfiles,
                              ListInstanceProfilesForRole, ListRoles,
                              DescribeInstances,
                              DescribeIamInstanceProfileAssociations
                              (tokens "fp-<offset>"); PathPrefix is always
                              applied to ListInstanceProfiles / ListRoles
    translate_moto_gaps [true] moto's HTTP 500 for RemoveRoleFromInstanceProfile
                              -> IAM 404 NoSuchEntity
    chained_session_limit [3600] STS AssumeRole with DurationSeconds above
                              this -> 400 ValidationError, as AWS answers a
                              role-chained assumption (moto accepts any);
                              null turns the check off
    assume_role_external_ids [{}] {role ARN: external id}: AssumeRole of that
                              role without that ExternalId -> 403 AccessDenied
                              (moto checks no trust policy)
    assume_role_denied [[]]   role ARNs whose AssumeRole -> 403 AccessDenied
    instance_profile_quota [null] IAM's instance profiles per account:
                              CreateInstanceProfile at or above it -> 409
                              LimitExceeded, and GetAccountSummary reports it
                              as InstanceProfilesQuota (moto: 1000, never
                              enforced); null leaves both to moto
    seed                      (write-only) re-seed the random generator

Call log entries of STS AssumeRole also carry "params": RoleArn,
RoleSessionName, DurationSeconds and ExternalId as sent.

Call log "fault" values: a fault kind, "propagation", "read_lag",
"sts_rule", "proxy_error" or null; "status" is 0 when the connection was dropped.

Standard library only.
"""

import argparse
import copy
import html
import http.client
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape as xml_escape

# --------------------------------------------------------------------------
# configuration

FAULT_KINDS = ("throttle", "500", "503", "reset_before", "reset_after", "latency")
# Faults only a scripted entry injects (never drawn at random): a permission
# that is missing stays missing, which is not what error_rate models; a proxy's
# HTML page and a call left hanging are events a test places where it wants them.
SCRIPTED_ONLY_KINDS = ("access_denied", "html_502", "hang")

DEFAULT_CONFIG = {
    "propagation_seconds": 0,
    "iam_read_lag_seconds": 0,
    "error_rate": 0.0,
    "fault_kinds": list(FAULT_KINDS),
    "fault_actions": None,
    "fault_services": None,
    "latency_ms": 200,
    "hang_seconds": 300,
    "page_size": None,
    "translate_moto_gaps": True,
    "chained_session_limit": 3600,
    "instance_profile_quota": None,
    "assume_role_external_ids": {},
    "assume_role_denied": [],
    # Deterministic faults, consumed before the random ones:
    # [{"kind": K, "action": A|null, "service": S|null, "count": N}, ...]
    "scripted_faults": [],
}


ASSUME_ROLE_LOGGED = ("RoleArn", "RoleSessionName", "DurationSeconds", "ExternalId")


class ConfigError(ValueError):
    pass


QUOTA_ENTRY_RE = re.compile(
    r"(<key>InstanceProfilesQuota</key>\s*<value>)\d+(</value>)")
PROFILES_ENTRY_RE = re.compile(r"<key>InstanceProfiles</key>\s*<value>(\d+)</value>")


def _num(key, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number")
    if value < minimum:
        raise ConfigError(f"{key} must be >= {minimum}")
    return value


def _str_list_or_null(key, value):
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key} must be null or a list of strings")
    return list(value)


def validate_config_update(update):
    """Validate a partial config; returns a normalised copy."""
    if not isinstance(update, dict):
        raise ConfigError("config must be a JSON object")
    out = {}
    for key, value in update.items():
        if key == "seed":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError("seed must be an integer")
            out[key] = value
            continue
        if key not in DEFAULT_CONFIG:
            raise ConfigError(f"unknown config key {key!r}")
        if key in ("propagation_seconds", "iam_read_lag_seconds", "latency_ms", "hang_seconds"):
            out[key] = _num(key, value)
        elif key == "error_rate":
            _num(key, value)
            if value > 1:
                raise ConfigError("error_rate must be within [0, 1]")
            out[key] = float(value)
        elif key == "fault_kinds":
            if not isinstance(value, list) or not all(v in FAULT_KINDS for v in value):
                raise ConfigError(f"fault_kinds must be a list drawn from {list(FAULT_KINDS)}")
            out[key] = list(value)
        elif key == "fault_actions":
            out[key] = _str_list_or_null(key, value)
        elif key == "fault_services":
            v = _str_list_or_null(key, value)
            out[key] = None if v is None else [s.lower() for s in v]
        elif key == "page_size":
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ConfigError("page_size must be null or a positive integer")
            out[key] = value
        elif key == "translate_moto_gaps":
            if not isinstance(value, bool):
                raise ConfigError("translate_moto_gaps must be a boolean")
            out[key] = value
        elif key == "chained_session_limit":
            out[key] = None if value is None else _num(key, value, 1)
        elif key == "instance_profile_quota":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 0):
                raise ConfigError("instance_profile_quota must be null or a non-negative integer")
            out[key] = value
        elif key == "assume_role_external_ids":
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise ConfigError("assume_role_external_ids must map role ARNs to strings")
            out[key] = dict(value)
        elif key == "assume_role_denied":
            v = _str_list_or_null(key, value)
            out[key] = v or []
        elif key == "scripted_faults":
            if not isinstance(value, list):
                raise ConfigError("scripted_faults must be a list")
            entries = []
            for e in value:
                kinds = FAULT_KINDS + SCRIPTED_ONLY_KINDS
                if not isinstance(e, dict) or e.get("kind") not in kinds:
                    raise ConfigError(f"each scripted fault needs kind in {list(kinds)}")
                extra = set(e) - {"kind", "action", "service", "count"}
                if extra:
                    raise ConfigError(f"unknown scripted fault keys {sorted(extra)}")
                count = e.get("count", 1)
                if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                    raise ConfigError("scripted fault count must be a non-negative integer")
                svc = e.get("service")
                entries.append({
                    "kind": e["kind"],
                    "action": e.get("action"),
                    "service": svc.lower() if isinstance(svc, str) else None,
                    "count": count,
                })
            out[key] = entries
    return out


class State:
    def __init__(self, seed):
        self.lock = threading.Lock()
        self.seed = seed
        self.rng = random.Random(seed)
        self.config = copy.deepcopy(DEFAULT_CONFIG)
        self.calls = []
        self.created = {}  # InstanceProfileName -> time.monotonic() of creation
        # The complete upstream listing behind proxy-made pages, so that a
        # continuation page does not re-read (and re-scan) all of moto's items:
        # key -> (status, headers, the listing's bytes). Emptied by every call
        # that is not a read, and by reset.
        self.listings = {}

    def cached_listing(self, key):
        with self.lock:
            return self.listings.get(key)

    def cache_listing(self, key, value):
        with self.lock:
            if len(self.listings) >= 16:
                self.listings.clear()
            self.listings[key] = value

    def forget_listings(self):
        with self.lock:
            self.listings.clear()

    def snapshot_config(self):
        with self.lock:
            return copy.deepcopy(self.config)

    def merge_config(self, update):
        update = validate_config_update(update)
        with self.lock:
            if "seed" in update:
                seed = update.pop("seed")
                self.seed = seed
                self.rng = random.Random(seed)
            self.config.update(update)
            return copy.deepcopy(self.config)

    def reset(self, seed_given=False, seed=None):
        with self.lock:
            if seed_given:
                self.seed = seed
            self.rng = random.Random(self.seed)
            self.config = copy.deepcopy(DEFAULT_CONFIG)
            self.calls = []
            self.created = {}
            self.listings = {}

    def log_call(self, service, action, status, fault, t, params=None):
        with self.lock:
            entry = {
                "service": service,
                "action": action,
                "status": status,
                "fault": fault,
                "t": t,
            }
            if params is not None:
                entry["params"] = params
            self.calls.append(entry)

    def record_created(self, name):
        with self.lock:
            self.created[name] = time.monotonic()

    def age(self, name):
        """Seconds since the proxy saw `name` created, or None."""
        with self.lock:
            ts = self.created.get(name)
        return None if ts is None else time.monotonic() - ts

    def draw_fault(self, service, action, cfg):
        with self.lock:
            for entry in self.config.get("scripted_faults", []):
                if entry["count"] <= 0:
                    continue
                if entry["action"] is not None and entry["action"] != action:
                    continue
                if entry["service"] is not None and entry["service"] != service:
                    continue
                entry["count"] -= 1
                return entry["kind"]
            rate = cfg["error_rate"]
            kinds = cfg["fault_kinds"]
            if rate <= 0 or not kinds:
                return None
            if cfg["fault_actions"] is not None and action not in cfg["fault_actions"]:
                return None
            if cfg["fault_services"] is not None and service not in cfg["fault_services"]:
                return None
            if self.rng.random() < rate:
                return self.rng.choice(kinds)
            return None


# --------------------------------------------------------------------------
# AWS error bodies

IAM_NS = "https://iam.amazonaws.com/doc/2010-05-08/"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"


def new_request_id():
    return str(uuid.uuid4())


def query_error(service, status, code, message, err_type="Sender"):
    """IAM/STS (AWS query protocol) error response."""
    rid = new_request_id()
    ns = STS_NS if service == "sts" else IAM_NS
    body = (
        f'<ErrorResponse xmlns="{ns}"><Error><Type>{err_type}</Type>'
        f"<Code>{xml_escape(code)}</Code><Message>{xml_escape(message)}</Message>"
        f"</Error><RequestId>{rid}</RequestId></ErrorResponse>"
    )
    headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", rid)]
    return status, headers, body.encode("utf-8")


def ec2_error(status, code, message):
    rid = new_request_id()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{xml_escape(code)}</Code>"
        f"<Message>{xml_escape(message)}</Message></Error></Errors>"
        f"<RequestID>{rid}</RequestID></Response>"
    )
    headers = [("Content-Type", "text/xml")]
    return status, headers, body.encode("utf-8")


def fault_response(service, kind):
    if kind == "throttle":
        if service == "ec2":
            return ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.")
        return query_error(service, 400, "Throttling", "Rate exceeded", "Sender")
    if kind == "500":
        if service == "ec2":
            return ec2_error(500, "InternalError", "An internal error has occurred")
        return query_error(service, 500, "ServiceFailure",
                           "The request processing has failed because of an unknown error, "
                           "exception or failure.", "Receiver")
    if kind == "503":
        if service == "ec2":
            return ec2_error(503, "Unavailable", "The server is overloaded and can't handle the request.")
        return query_error(service, 503, "ServiceUnavailable",
                           "Service is unable to handle request.", "Receiver")
    if kind == "html_502":
        # What a load balancer or proxy in front of the endpoint answers: no AWS error body.
        page = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n")
        return 502, [("Content-Type", "text/html")], page.encode("utf-8")
    if kind == "access_denied":
        who = "arn:aws:sts::123456789012:assumed-role/ipb-controller/test"
        if service == "ec2":
            return ec2_error(403, "UnauthorizedOperation",
                             "You are not authorized to perform this operation. "
                             f"User: {who} is not authorized to perform: ec2:*")
        return query_error(service, 403, "AccessDenied",
                           f"User: {who} is not authorized to perform: {service}:* "
                           "with an explicit deny in a service control policy", "Sender")
    raise AssertionError(kind)


def invalid_token_error(service, token):
    if service == "ec2":
        return ec2_error(400, "InvalidParameterValue",
                         f"Invalid value '{token}' for nextToken.")
    return query_error(service, 400, "ValidationError",
                       f"Invalid value '{token}' for Marker.", "Sender")


# --------------------------------------------------------------------------
# minimal balanced XML scanner (keeps the original bytes intact)

_TOKEN_RE = re.compile(
    r"<!\[CDATA\[.*?\]\]>"
    r"|<!--.*?-->"
    r"|<\?.*?\?>"
    r"|<![^>]*>"
    r"|<(/?)([^\s/>!?]+)((?:[^>\"']|\"[^\"]*\"|'[^']*')*?)(/?)>",
    re.S,
)


class El:
    __slots__ = ("name", "start", "cstart", "cend", "end", "children")

    def __init__(self, name, start, cstart):
        self.name = name
        self.start = start    # index of '<' of the start tag
        self.cstart = cstart  # index just after the start tag
        self.cend = None      # index of '<' of the end tag
        self.end = None       # index just after the end tag
        self.children = []

    def child(self, name):
        for c in self.children:
            if c.name == name:
                return c
        return None


class XmlScanError(ValueError):
    pass


# The scans of the last few large documents: each page of a proxy-paged
# listing is cut from the same cached document (10,000 instance profiles:
# 10 pages, each of which scanned all 10,000 again).
_SCANS = {}
_SCANS_LOCK = threading.Lock()
_SCAN_MEMO_MIN = 64 * 1024


def scan_xml(text):
    """Return a virtual document node whose children are the top elements
    (shared by the callers that scan the same large text: read-only)."""
    if len(text) < _SCAN_MEMO_MIN:
        return _scan_xml(text)
    with _SCANS_LOCK:
        doc = _SCANS.get(text)
    if doc is None:
        doc = _scan_xml(text)
        with _SCANS_LOCK:
            if len(_SCANS) >= 4:
                _SCANS.clear()
            _SCANS[text] = doc
    return doc


def _scan_xml(text):
    doc = El(None, 0, 0)
    stack = [doc]
    for m in _TOKEN_RE.finditer(text):
        name = m.group(2)
        if name is None:
            continue
        local = name.rsplit(":", 1)[-1]
        if m.group(1):
            if len(stack) < 2 or stack[-1].name != local:
                raise XmlScanError(f"unbalanced </{name}> at {m.start()}")
            el = stack.pop()
            el.cend = m.start()
            el.end = m.end()
        elif m.group(4):
            el = El(local, m.start(), m.end())
            el.cend = el.end = m.end()
            stack[-1].children.append(el)
        else:
            el = El(local, m.start(), m.end())
            stack[-1].children.append(el)
            stack.append(el)
    if len(stack) != 1:
        raise XmlScanError("unclosed elements")
    doc.cend = doc.end = len(text)
    return doc


def el_text(text, el):
    if el is None or el.cend is None:
        return None
    return html.unescape(text[el.cstart:el.cend])


def apply_edits(text, edits):
    """edits: list of (start, end, replacement), non-overlapping."""
    for start, end, repl in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        text = text[:start] + repl + text[end:]
    return text


# --------------------------------------------------------------------------
# list handling

# (service, action) -> how to page/filter the response
LIST_SPECS = {
    ("iam", "ListInstanceProfiles"): {
        "style": "iam", "result": "ListInstanceProfilesResult", "container": "InstanceProfiles",
        "item": "member", "path_prefix": True, "profiles": True},
    ("iam", "ListInstanceProfilesForRole"): {
        "style": "iam", "result": "ListInstanceProfilesForRoleResult", "container": "InstanceProfiles",
        "item": "member", "path_prefix": False, "profiles": True},
    ("iam", "ListRoles"): {
        "style": "iam", "result": "ListRolesResult", "container": "Roles",
        "item": "member", "path_prefix": True, "profiles": False},
    ("ec2", "DescribeIamInstanceProfileAssociations"): {
        "style": "ec2", "container": "iamInstanceProfileAssociationSet", "item": "item",
        "path_prefix": False, "profiles": False},
    ("ec2", "DescribeInstances"): {
        "style": "ec2", "container": "reservationSet", "item": "item",
        "path_prefix": False, "profiles": False},
}

# When the proxy pages, it needs the whole list from moto: the client's paging
# parameters are stripped, a huge limit is sent where moto honours one (its
# default page is 100), and any remaining moto paging is followed upstream
# (DescribeIamInstanceProfileAssociations pages at 100 whatever is asked).
UPSTREAM_ALL = {
    ("iam", "ListRoles"): "MaxItems",
    ("ec2", "DescribeInstances"): "MaxResults",
}
UPSTREAM_ALL_VALUE = "1000000"
IAM_PAGING_PARAMS = ("MaxItems", "Marker")
EC2_PAGING_PARAMS = ("MaxResults", "NextToken", "MaxItems")
TOKEN_RE = re.compile(r"^fp-(\d+)$")


def paging_params(style):
    if style == "iam":
        return "MaxItems", "Marker"
    return "MaxResults", "NextToken"


def strip_params(raw, names):
    """Remove form/query parameters by name from an urlencoded string."""
    if not raw:
        return raw
    kept = []
    for part in raw.split("&"):
        key = urllib.parse.unquote_plus(part.split("=", 1)[0])
        if key in names:
            continue
        kept.append(part)
    return "&".join(kept)


def list_parent(doc, spec):
    """The element holding the list container and the paging markers."""
    if not doc.children:
        return None
    root = doc.children[0]
    if spec["style"] == "iam":
        return root.child(spec["result"])
    return root


def list_container(doc, spec):
    parent = list_parent(doc, spec)
    return None if parent is None else parent.child(spec["container"])


def upstream_token(text, doc, spec):
    """moto's own continuation token in a list response, if any."""
    parent = list_parent(doc, spec)
    if parent is None:
        return None
    if spec["style"] == "iam":
        truncated = (el_text(text, parent.child("IsTruncated")) or "").strip().lower()
        marker = (el_text(text, parent.child("Marker")) or "").strip()
        return marker if truncated == "true" and marker else None
    token = (el_text(text, parent.child("nextToken")) or "").strip()
    return token or None


def with_param(raw, name, value):
    raw = strip_params(raw, (name,))
    pair = f"{urllib.parse.quote(name)}={urllib.parse.quote(value, safe='')}"
    return f"{raw}&{pair}" if raw else pair


def rewrite_list(text, spec, keep, offset, limit):
    """Filter (keep(text, el) -> bool) and optionally page the list.

    offset/limit None => filtering only, moto's own paging markers untouched.
    Returns the new text (unchanged text object when nothing had to change).
    """
    doc = scan_xml(text)
    parent = list_parent(doc, spec)
    if parent is None:
        return text
    container = parent.child(spec["container"])
    edits = []
    if container is not None and container.cstart != container.end:
        items = [c for c in container.children if c.name == spec["item"]]
        kept = [c for c in items if keep(text, c)]
        paging = limit is not None
        if paging:
            page = kept[offset:offset + limit]
            more = offset + limit < len(kept)
        else:
            page = kept
            more = False
        if len(page) != len(items):
            # Keep whatever sits between the start tag and the first item, and
            # after the last item (normally nothing).
            if items:
                head = text[container.cstart:items[0].start]
                tail = text[items[-1].end:container.cend]
            else:
                head, tail = text[container.cstart:container.cend], ""
            inner = head + "".join(text[c.start:c.end] for c in page) + tail
            edits.append((container.cstart, container.cend, inner))
    else:
        paging = limit is not None
        more = False
        kept = []
    if paging:
        next_token = f"fp-{offset + limit}" if more else None
        if spec["style"] == "iam":
            for c in parent.children:
                if c.name in ("IsTruncated", "Marker"):
                    edits.append((c.start, c.end, ""))
            extra = "<IsTruncated>true</IsTruncated>" if more else "<IsTruncated>false</IsTruncated>"
            if next_token:
                extra += f"<Marker>{next_token}</Marker>"
        else:
            for c in parent.children:
                if c.name == "nextToken":
                    edits.append((c.start, c.end, ""))
            extra = f"<nextToken>{next_token}</nextToken>" if next_token else ""
        if extra:
            if parent.cend == parent.end:  # self-closing parent: unlikely
                return text
            edits.append((parent.cend, parent.cend, extra))
    if not edits:
        return text
    return apply_edits(text, edits)


# --------------------------------------------------------------------------
# HTTP plumbing

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection",
}
CRED_RE = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request")
QCRED_RE = re.compile(r"^[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request$")


class ResetConnection(Exception):
    pass


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, upstream, state, verbose):
        self.upstream = upstream
        self.state = state
        self.verbose = verbose
        super().__init__(addr, handler)

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultproxy/1.0"
    sys_version = ""

    # ---- plumbing ---------------------------------------------------------
    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("faultproxy: %s - %s\n" % (self.address_string(), fmt % args))

    def log_error(self, fmt, *args):
        self.log_message(fmt, *args)

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers
                        trailer = self.rfile.readline(65537)
                        if trailer in (b"\r\n", b"\n", b""):
                            break
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = self.headers.get("Content-Length")
        if length:
            return self.rfile.read(int(length))
        return b""

    def _send(self, status, headers, body):
        self.send_response_only(status)
        have_date = False
        for k, v in headers:
            lk = k.lower()
            if lk in HOP_BY_HOP or lk == "content-length":
                continue
            if lk == "date":
                have_date = True
            self.send_header(k, v)
        if not have_date:
            self.send_header("Date", self.date_time_string())
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        # Headers and body in one write (no Nagle / delayed-ACK stalls).
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD" and body:
            self._headers_buffer.append(body)
        self.flush_headers()
        self.wfile.flush()

    def _send_json(self, status, obj):
        body = json.dumps(obj).encode("utf-8")
        self._send(status, [("Content-Type", "application/json")], body)

    def _abort_connection(self):
        """Drop the client connection without any response (TCP RST)."""
        self.close_connection = True
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            fd = sock.detach()
            if fd >= 0:
                os.close(fd)
        except OSError:
            pass

    # ---- routing ----------------------------------------------------------
    def _dispatch(self):
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        path_only = urllib.parse.urlsplit(self.path).path
        if path_only == "/_fault" or path_only.startswith("/_fault/"):
            self._control(path_only, body)
            return
        try:
            self._proxy(body)
        except ResetConnection:
            self._abort_connection()

    # ---- control API ------------------------------------------------------
    def _control(self, path, body):
        state = self.server.state
        cmd = path[len("/_fault/"):].strip("/") if path.startswith("/_fault/") else ""
        method = self.command
        try:
            payload = json.loads(body.decode("utf-8")) if body.strip() else None
        except (ValueError, UnicodeDecodeError) as exc:
            self._send_json(400, {"error": f"invalid JSON: {exc}"})
            return
        if cmd == "health":
            self._send_json(200, {"ok": True})
        elif cmd == "config" and method == "GET":
            self._send_json(200, state.snapshot_config())
        elif cmd == "config" and method in ("POST", "PUT"):
            try:
                cfg = state.merge_config(payload if payload is not None else {})
            except ConfigError as exc:
                self._send_json(400, {"error": str(exc)})
                return
            self._send_json(200, cfg)
        elif cmd == "calls" and method == "GET":
            with state.lock:
                calls = [dict(c) for c in state.calls]
            self._send_json(200, {"calls": calls})
        elif cmd == "reset" and method == "POST":
            if payload is not None and not isinstance(payload, dict):
                self._send_json(400, {"error": "reset body must be a JSON object"})
                return
            payload = payload or {}
            seed_given = "seed" in payload
            seed = payload.get("seed")
            if seed_given and seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
                self._send_json(400, {"error": "seed must be an integer"})
                return
            state.reset(seed_given, seed)
            self._send_json(200, {"ok": True, "seed": state.seed})
        else:
            self._send_json(404, {"error": f"no control endpoint {method} {path}"})

    # ---- AWS call identification -----------------------------------------
    def _identify(self, body):
        split = urllib.parse.urlsplit(self.path)
        service = None
        auth = self.headers.get("Authorization") or ""
        m = CRED_RE.search(auth)
        if m:
            service = m.group(4).lower()
        qparams = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        if service is None:
            cred = (qparams.get("X-Amz-Credential") or [""])[0]
            m = QCRED_RE.match(cred)
            if m:
                service = m.group(2).lower()
        params = {}
        ctype = (self.headers.get("Content-Type") or "").lower()
        if body and ("x-www-form-urlencoded" in ctype or not ctype):
            try:
                params.update(urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                pass
        for k, v in qparams.items():
            params.setdefault(k, v)
        flat = {k: v[0] for k, v in params.items()}
        action = flat.get("Action")
        return service or "unknown", action, flat

    # ---- proxying ---------------------------------------------------------
    def _forward(self, path, body):
        up = self.server.upstream
        conn_cls = http.client.HTTPSConnection if up.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(up.hostname, up.port, timeout=120)
        try:
            headers = {}
            for k, v in self.headers.items():
                lk = k.lower()
                if lk in HOP_BY_HOP or lk in ("content-length", "expect", "accept-encoding"):
                    continue
                headers[k] = v
            headers["Accept-Encoding"] = "identity"
            if body or self.command in ("POST", "PUT", "PATCH"):
                headers["Content-Length"] = str(len(body))
            base = up.path.rstrip("/") if up.path else ""
            conn.request(self.command, base + path, body=body if body else None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, list(resp.getheaders()), data
        finally:
            conn.close()

    def _proxy(self, body):
        state = self.server.state
        t = time.time()
        service, action, params = self._identify(body)
        try:
            fault, resp = self._handle_call(service, action, params, body)
        except Exception as exc:  # a proxy bug: answer visibly instead of hanging up
            if self.server.verbose:
                traceback.print_exc(file=sys.stderr)
            fault = "proxy_error"
            msg = f"faultproxy internal error: {exc!r}"
            resp = (ec2_error(500, "InternalError", msg) if service == "ec2"
                    else query_error(service, 500, "ServiceFailure", msg, "Receiver"))
        # Log before answering, so a client that reads the call log right
        # after its response always sees this call.
        logged = None
        if service == "sts" and action == "AssumeRole":
            logged = {k: params[k] for k in ASSUME_ROLE_LOGGED if k in params}
        state.log_call(service, action, 0 if resp is None else resp[0], fault, t, logged)
        self.log_message("%s %s -> %s%s", service, action, "reset" if resp is None else resp[0],
                         f" (fault {fault})" if fault else "")
        if resp is None:
            raise ResetConnection()
        try:
            self._send(*resp)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _handle_call(self, service, action, params, body):
        """Returns (fault, (status, headers, body)); a None response means
        drop the connection without answering."""
        state = self.server.state
        cfg = state.snapshot_config()
        fault = state.draw_fault(service, action, cfg)
        if fault in ("throttle", "500", "503", "access_denied", "html_502"):
            resp = fault_response(service, fault)
            return fault, resp
        if fault == "reset_before":
            return fault, None
        if fault == "latency":
            time.sleep(cfg["latency_ms"] / 1000.0)
        if fault == "hang":
            time.sleep(cfg["hang_seconds"])

        # IAM -> EC2 propagation delay
        if service == "ec2" and action in ("AssociateIamInstanceProfile",
                                           "ReplaceIamInstanceProfileAssociation"):
            resp = self._propagation_check(params, cfg)
            if resp is not None:
                fault = fault or "propagation"
                return fault, resp

        # STS: what AWS checks and moto does not
        if service == "sts" and action == "AssumeRole":
            resp = self._assume_role_check(params, cfg)
            if resp is not None:
                return fault or "sts_rule", resp

        # IAM's instance-profile quota, which moto reports but never enforces
        if (service == "iam" and action == "CreateInstanceProfile"
                and cfg["instance_profile_quota"] is not None):
            used = self._profiles_in_use()
            if used is not None and used >= cfg["instance_profile_quota"]:
                return fault or "quota", query_error(
                    "iam", 409, "LimitExceeded",
                    f"Cannot exceed quota for InstanceProfilesPerAccount: "
                    f"{cfg['instance_profile_quota']}")

        # IAM read-after-write lag for GetInstanceProfile
        if service == "iam" and action == "GetInstanceProfile" and cfg["iam_read_lag_seconds"] > 0:
            name = params.get("InstanceProfileName")
            age = state.age(name) if name else None
            if age is not None and age < cfg["iam_read_lag_seconds"]:
                resp = query_error("iam", 404, "NoSuchEntity",
                                   f"Instance Profile {name} cannot be found.")
                fault = fault or "read_lag"
                return fault, resp

        # list paging / filtering: decide before forwarding
        spec = LIST_SPECS.get((service, action))
        path = self.path
        fwd_body = body
        offset = limit = None
        if spec is not None:
            limit_param, token_param = paging_params(spec["style"])
            token = params.get(token_param)
            proxy_pages = cfg["page_size"] is not None or (token or "").startswith("fp-")
            if proxy_pages:
                offset = 0
                if token:
                    m = TOKEN_RE.match(token)
                    if not m:
                        resp = invalid_token_error(service, token)
                        return fault, resp
                    offset = int(m.group(1))
                limit = cfg["page_size"]
                req_limit = params.get(limit_param)
                try:
                    req_limit = int(req_limit) if req_limit not in (None, "") else None
                except ValueError:
                    req_limit = None
                if req_limit is not None and req_limit > 0:
                    limit = req_limit if limit is None else min(limit, req_limit)
                if limit is None:
                    limit = 1000
                names = IAM_PAGING_PARAMS if spec["style"] == "iam" else EC2_PAGING_PARAMS
                all_param = UPSTREAM_ALL.get((service, action))
                if all_param == "MaxResults" and "InstanceId.1" in params:
                    all_param = None  # moto rejects InstanceIds together with MaxResults
                extra = f"{all_param}={UPSTREAM_ALL_VALUE}" if all_param else ""
                split = urllib.parse.urlsplit(self.path)
                if body or self.command == "POST":
                    fwd = strip_params(body.decode("utf-8", "replace"), names)
                    if extra:
                        fwd = f"{fwd}&{extra}" if fwd else extra
                    fwd_body = fwd.encode("utf-8")
                    query = strip_params(split.query, names)
                else:
                    query = strip_params(split.query, names)
                    if extra:
                        query = f"{query}&{extra}" if query else extra
                if query != split.query:
                    path = urllib.parse.urlunsplit(("", "", split.path, query, split.fragment))

        if not (action.startswith(("Describe", "List", "Get")) or service == "sts"):
            state.forget_listings()
        try:
            if offset is not None:
                # Continuation pages come from the listing the first page read
                # (as long as nothing was written since); a first page reads anew.
                key = (service, action, path, fwd_body)
                cached = state.cached_listing(key) if offset > 0 else None
                if cached is None:
                    cached = self._forward_all(path, fwd_body, spec)
                    state.cache_listing(key, cached)
                status, headers, data = cached
            else:
                status, headers, data = self._forward(path, fwd_body)
        except (OSError, http.client.HTTPException) as exc:
            if fault == "reset_after":
                return fault, None
            self.log_message("upstream error: %r", exc)
            if service == "ec2":
                resp = ec2_error(502, "Unavailable", f"faultproxy upstream error: {exc}")
            else:
                resp = query_error(service, 502, "ServiceUnavailable",
                                   f"faultproxy upstream error: {exc}", "Receiver")
            return fault, resp

        if 200 <= status < 300:
            if (service == "iam" and action == "GetAccountSummary"
                    and cfg["instance_profile_quota"] is not None):
                data = QUOTA_ENTRY_RE.sub(
                    lambda m: f"{m.group(1)}{cfg['instance_profile_quota']}{m.group(2)}",
                    data.decode("utf-8", "replace")).encode("utf-8")
            if service == "iam" and action == "CreateInstanceProfile":
                name = params.get("InstanceProfileName")
                if name:
                    state.record_created(name)
            if spec is not None:
                data = self._rewrite_list(data, spec, params, cfg, offset, limit)
        elif (service == "iam" and action == "RemoveRoleFromInstanceProfile"
              and status == 500 and cfg["translate_moto_gaps"]):
            role = params.get("RoleName", "")
            name = params.get("InstanceProfileName", "")
            status, headers, data = query_error(
                "iam", 404, "NoSuchEntity",
                f"The role {role} is not attached to instance profile {name}.")

        if fault == "reset_after":
            return fault, None
        return fault, (status, headers, data)

    def _profiles_in_use(self):
        """moto's count of instance profiles (its GetAccountSummary)."""
        try:
            status, _, data = self._forward(
                "/", b"Action=GetAccountSummary&Version=2010-05-08")
        except (OSError, http.client.HTTPException):
            return None
        if status != 200:
            return None
        m = PROFILES_ENTRY_RE.search(data.decode("utf-8", "replace"))
        return int(m.group(1)) if m else None

    def _assume_role_check(self, params, cfg):
        role = params.get("RoleArn", "")
        limit = cfg["chained_session_limit"]
        duration = params.get("DurationSeconds")
        if limit is not None and duration not in (None, ""):
            try:
                seconds = int(duration)
            except ValueError:
                seconds = None
            if seconds is None or seconds > limit:
                return query_error(
                    "sts", 400, "ValidationError",
                    "The requested DurationSeconds exceeds the 1 hour session limit "
                    "for roles assumed by role chaining.")
        if role in cfg["assume_role_denied"]:
            return query_error(
                "sts", 403, "AccessDenied",
                f"User: arn:aws:sts::123456789012:assumed-role/controller/session is not "
                f"authorized to perform: sts:AssumeRole on resource: {role}")
        want = cfg["assume_role_external_ids"].get(role)
        if want is not None and params.get("ExternalId") != want:
            return query_error(
                "sts", 403, "AccessDenied",
                f"User: arn:aws:sts::123456789012:assumed-role/controller/session is not "
                f"authorized to perform: sts:AssumeRole on resource: {role}")
        return None

    def _forward_all(self, path, body, spec):
        """Forward a list call and follow moto's own paging, if any, so the
        result holds the complete list (moto ignores or caps some limits)."""
        status, headers, data = self._forward(path, body)
        if not 200 <= status < 300:
            return status, headers, data
        try:
            text = data.decode("utf-8")
            first = scan_xml(text)
        except (UnicodeDecodeError, XmlScanError):
            return status, headers, data
        _, token_param = paging_params(spec["style"])
        token = upstream_token(text, first, spec)
        if not token:
            return status, headers, data
        extra_items = []
        seen = set()
        while token and token not in seen and len(seen) < 1000:
            seen.add(token)
            split = urllib.parse.urlsplit(path)
            if body or self.command == "POST":
                page_body = with_param(body.decode("utf-8", "replace"), token_param, token).encode("utf-8")
                page_path = path
            else:
                page_body = body
                page_path = urllib.parse.urlunsplit(
                    ("", "", split.path, with_param(split.query, token_param, token), split.fragment))
            st, hd, page = self._forward(page_path, page_body)
            if not 200 <= st < 300:
                return st, hd, page
            try:
                ptext = page.decode("utf-8")
                pdoc = scan_xml(ptext)
            except (UnicodeDecodeError, XmlScanError):
                break
            container = list_container(pdoc, spec)
            if container is not None:
                extra_items += [ptext[c.start:c.end] for c in container.children if c.name == spec["item"]]
            token = upstream_token(ptext, pdoc, spec)
        container = list_container(first, spec)
        if container is None or container.cstart == container.end:
            return status, headers, data  # cannot merge into a self-closing container
        merged = text[:container.cend] + "".join(extra_items) + text[container.cend:]
        return status, headers, merged.encode("utf-8")

    def _propagation_check(self, params, cfg):
        window = cfg["propagation_seconds"]
        if window <= 0:
            return None
        state = self.server.state
        name = params.get("IamInstanceProfile.Name")
        arn = params.get("IamInstanceProfile.Arn")
        if name:
            age = state.age(name)
            if age is not None and age < window:
                return ec2_error(400, "InvalidParameterValue",
                                 f"Value ({name}) for parameter iamInstanceProfile.name is invalid. "
                                 "Invalid IAM Instance Profile name")
        if arn:
            arn_name = arn.rsplit("/", 1)[-1]
            age = state.age(arn_name) if "/" in arn else None
            if age is not None and age < window:
                return ec2_error(400, "InvalidParameterValue",
                                 f"Value ({arn}) for parameter iamInstanceProfile.arn is invalid. "
                                 "Invalid IAM Instance Profile name")
        return None

    def _rewrite_list(self, data, spec, params, cfg, offset, limit):
        state = self.server.state
        prefix = params.get("PathPrefix") if spec["path_prefix"] else None
        lag = cfg["iam_read_lag_seconds"] if spec["profiles"] else 0
        if not prefix and lag <= 0 and limit is None:
            return data
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return data

        def keep(src, el):
            if prefix:
                p = el_text(src, el.child("Path"))
                if p is not None and not p.startswith(prefix):
                    return False
            if lag > 0:
                n = el_text(src, el.child("InstanceProfileName"))
                if n is not None:
                    age = state.age(n)
                    if age is not None and age < lag:
                        return False
            return True

        try:
            new = rewrite_list(text, spec, keep, offset, limit)
        except XmlScanError as exc:
            self.log_message("could not rewrite list response: %s", exc)
            return data
        return data if new is text else new.encode("utf-8")


# --------------------------------------------------------------------------
# main

def parse_listen(value):
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, "0"
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def main(argv=None):
    ap = argparse.ArgumentParser(description="AWS fault-injection proxy for moto_server")
    ap.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:5000")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0 = any free port)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default=None, help="initial config JSON (or @file)")
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = ap.parse_args(argv)

    upstream = urllib.parse.urlsplit(args.upstream)
    if upstream.scheme not in ("http", "https") or not upstream.hostname:
        ap.error("--upstream must be an http(s) URL")
    if upstream.port is None:
        upstream = urllib.parse.urlsplit(
            f"{upstream.scheme}://{upstream.hostname}:{443 if upstream.scheme == 'https' else 80}"
            f"{upstream.path}")

    state = State(args.seed)
    if args.config:
        raw = args.config
        if raw.startswith("@"):
            with open(raw[1:], encoding="utf-8") as fh:
                raw = fh.read()
        try:
            state.merge_config(json.loads(raw))
        except (ValueError, ConfigError) as exc:
            ap.error(f"--config: {exc}")

    host, port = parse_listen(args.listen)
    if ":" in host:
        ProxyServer.address_family = socket.AF_INET6
    server = ProxyServer((host, port), Handler, upstream, state, args.verbose)

    def _terminate(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)

    sys.stdout.write(f"READY {server.server_address[1]}\n")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
