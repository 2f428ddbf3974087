#!/usr/bin/env python3
"""Runs the Argo CD health check under a real Lua 5.1 against its fixtures.

Run: python3 tests/support/argocd_health_test.py [DIR]
DIR defaults to deploy/argocd/iam.instanceprofile.dev/InstanceProfileBinding,
laid out as in Argo CD's resource_customizations: health.lua,
health_test.yaml (tests: [{healthStatus: {status, message}, inputPath}]) and
testdata/*.yaml.

Argo CD embeds gopher-lua (Lua 5.1 semantics) and runs a health script from
argocd-cm with only the base, table and package libraries and a reduced os
library: each fixture gets a fresh Lua 5.1 runtime (lupa.lua51) cut down the
same way, the global `obj` set to the fixture as Lua tables (arrays 1-based,
timestamps as strings, as Argo CD converts the unstructured object), and the
script's returned table compared with the expected status and message.
Also checked: every testdata file is used, and the fixtures together reach
every `hs.status = ...` line of the script.

Prints one line per check and "N passed, M failed" last; exit 1 on failure.
Without lupa (or PyYAML) it prints "skipped: lupa not installed" and exits 0,
except under CI=true, where a missing interpreter is a failure.
"""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_DIR = os.path.join(
    REPO, "deploy", "argocd", "iam.instanceprofile.dev", "InstanceProfileBinding"
)
CI = os.environ.get("CI") == "true"
HEALTH_CODES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
CHUNK = "@health.lua"


def missing(what):
    if CI:
        print(f"{what} not installed, and CI=true: the Argo CD health check must run "
              f"(bash scripts/python-env.sh installs tests/requirements.txt into .venv)")
        print("0 passed, 1 failed")
        sys.exit(1)
    print(f"skipped: {what} not installed")
    sys.exit(0)


try:
    import lupa.lua51 as lua51
except ImportError:
    missing("lupa")
try:
    import yaml
except ImportError:
    missing("PyYAML")


class KubeLoader(yaml.SafeLoader):
    """YAML as Argo CD sees an object: JSON types, so timestamps stay strings."""


KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=KubeLoader)


def to_lua(lua, value):
    """Like Argo CD's decodeValue: maps and lists become tables, lists 1-based."""
    if isinstance(value, dict):
        table = lua.table()
        for key, item in value.items():
            table[str(key)] = to_lua(lua, item)
        return table
    if isinstance(value, list):
        table = lua.table()
        for i, item in enumerate(value, start=1):
            table[i] = to_lua(lua, item)
        return table
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"unexpected YAML value {value!r}")


# Runs in the fresh runtime before the script: trims the libraries to what
# Argo CD opens for a script from argocd-cm, compiles the script as a chunk of
# its own, records the lines it runs, and returns what it returns.
SANDBOX = """
local script, chunkname, covered = ...
assert(_VERSION == "Lua 5.1", "expected Lua 5.1, got " .. tostring(_VERSION))
local sethook, getinfo = debug.sethook, debug.getinfo
local time, date = os.time, os.date
getmetatable("").__index = nil
string, math, io, debug, coroutine = nil, nil, nil, nil, nil
os = { time = time, date = date }
for _, name in ipairs({ "string", "math", "io", "debug", "coroutine" }) do
  package.loaded[name] = nil
end
package.loaded.os = os
local chunk, err = loadstring(script, chunkname)
if chunk == nil then
  error(err, 0)
end
sethook(function(_, line)
  if getinfo(2, "S").source == chunkname then
    covered[line] = true
  end
end, "l")
local ok, result = pcall(chunk)
sethook()
if not ok then
  error(result, 0)
end
return result
"""


def run_script(script, obj, covered_lines):
    lua = lua51.LuaRuntime(register_eval=False, register_builtins=False,
                           unpack_returned_tuples=False)
    if obj is not None:
        lua.globals().obj = to_lua(lua, obj)
    covered = lua.table()
    result = lua.execute(SANDBOX, script, CHUNK, covered)
    covered_lines.update(int(line) for line in covered.keys())
    if lua51.lua_type(result) != "table":
        raise AssertionError(f"the script returned {lua51.lua_type(result) or type(result).__name__}, "
                             "not a table")
    return result["status"], result["message"]


def main():
    base = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR
    with open(os.path.join(base, "health.lua"), encoding="utf-8") as f:
        script = f.read()
    tests = (load_yaml(os.path.join(base, "health_test.yaml")) or {}).get("tests") or []
    passed = failed = 0
    covered_lines = set()

    def report(ok, name, detail=""):
        nonlocal passed, failed
        if ok:
            passed += 1
            print(f"ok    {name}{detail}")
        else:
            failed += 1
            print(f"FAIL  {name}{detail}")

    for test in tests:
        input_path = test.get("inputPath", "")
        want = test.get("healthStatus") or {}
        want_status, want_message = want.get("status"), want.get("message", "")
        try:
            obj = load_yaml(os.path.join(base, input_path))
            status, message = run_script(script, obj, covered_lines)
        except Exception as e:  # a Lua error is a failed fixture, not a crash
            first = (str(e).splitlines() or [""])[0]
            report(False, input_path, f": {type(e).__name__}: {first}")
            continue
        message = message or ""
        if want_status not in HEALTH_CODES:
            report(False, input_path, f": health_test.yaml expects unknown status {want_status!r}")
        elif (status, message) == (want_status, want_message):
            report(True, input_path, f": {status}")
        else:
            report(False, input_path,
                   f":\n      want {want_status}: {want_message!r}\n      got  {status}: {message!r}")

    used = {os.path.normpath(t.get("inputPath", "")) for t in tests}
    testdata = os.path.join(base, "testdata")
    present = {
        os.path.normpath(os.path.join("testdata", name))
        for name in (os.listdir(testdata) if os.path.isdir(testdata) else [])
        if name.endswith((".yaml", ".yml"))
    }
    unused = sorted(present - used)
    report(bool(tests) and not unused, "every testdata file is a test",
           f": unused {', '.join(unused)}" if unused else "")

    status_lines = [
        n for n, line in enumerate(script.splitlines(), start=1)
        if re.match(r"\s*hs\.status\s*=", line)
    ]
    unreached = [n for n in status_lines if n not in covered_lines]
    report(bool(status_lines) and not unreached, "the fixtures reach every hs.status line",
           f": health.lua lines {unreached} never run" if unreached
           else f" ({len(status_lines)} lines)")

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
