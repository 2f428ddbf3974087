#!/usr/bin/env python3
"""Self-test for faultproxy.py: boto3 -> faultproxy -> moto_server.

Run: python3 tests/support/test_faultproxy.py
Skips (exit 0) when boto3 or moto_server is unavailable.
Last line of output: "N passed, M failed"; exit status 1 on any failure.
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PROXY = os.path.join(HERE, "faultproxy.py")

try:
    import boto3
    import botocore.exceptions
    from botocore.config import Config
except ImportError:
    print("SKIP: boto3 is not installed")
    print("0 passed, 0 failed")
    sys.exit(0)

MOTO = shutil.which("moto_server")
if MOTO is None:
    print("SKIP: moto_server is not on PATH")
    print("0 passed, 0 failed")
    sys.exit(0)

ASSUME = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
})
AMI = "ami-12c6146b"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class Env:
    def __init__(self):
        self.moto_port = free_port()
        self.moto = subprocess.Popen(
            [MOTO, "-H", "127.0.0.1", "-p", str(self.moto_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.moto_port):
            raise RuntimeError("moto_server did not start")
        self.proxy_err = tempfile.TemporaryFile(mode="w+")
        self.proxy = subprocess.Popen(
            [sys.executable, PROXY, "--upstream", f"http://127.0.0.1:{self.moto_port}", "--seed", "7",
             "--verbose"],
            stdout=subprocess.PIPE, stderr=self.proxy_err, text=True)
        line = self.proxy.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"proxy did not print READY: {line!r} {self.proxy.stderr.read()}")
        self.ready_line = line
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        # total_max_attempts=1: no retries at all (legacy "max_attempts" counts retries)
        cfg = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30)
        kw = dict(endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="testing",
                  aws_secret_access_key="testing", config=cfg)
        self.iam = boto3.client("iam", **kw)
        self.ec2 = boto3.client("ec2", **kw)
        self.sts = boto3.client("sts", **kw)
        self.sqs = boto3.client("sqs", **kw)

    def control(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + "/_fault/" + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def config(self, **kw):
        status, body = self.control("POST", "config", kw)
        assert status == 200, body
        return body

    def calls(self):
        return self.control("GET", "calls")[1]["calls"]

    def reset_all(self):
        self.control("POST", "reset", {})
        req = urllib.request.Request(f"http://127.0.0.1:{self.moto_port}/moto-api/reset",
                                     data=b"", method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def proxy_tracebacks(self):
        self.proxy_err.seek(0)
        text = self.proxy_err.read()
        return text if "Traceback" in text else ""

    def close(self):
        for p in (self.proxy, self.moto):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def err_code(exc):
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def expect_client_error(fn, code, status=None):
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        got = err_code(e)
        assert got[0] == code, f"expected {code}, got {got} ({e})"
        if status is not None:
            assert got[1] == status, f"expected HTTP {status}, got {got}"
        return e
    raise AssertionError(f"expected ClientError {code}, call succeeded")


def run_instances(env, n):
    ids = []
    for _ in range(n):  # one reservation per call
        r = env.ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1)
        ids.append(r["Instances"][0]["InstanceId"])
    return ids


# ---------------------------------------------------------------------------
# tests

def t_health_and_ready(env):
    assert env.ready_line.strip() == f"READY {env.port}"
    assert env.control("GET", "health") == (200, {"ok": True})
    status, body = env.control("POST", "config", {"no_such_key": 1})
    assert status == 400, body


def t_plain_forwarding(env):
    ident = env.sts.get_caller_identity()
    assert ident["Account"], ident
    env.iam.create_role(RoleName="role-a", AssumeRolePolicyDocument=ASSUME)
    env.iam.create_instance_profile(InstanceProfileName="plain-1")
    env.iam.add_role_to_instance_profile(InstanceProfileName="plain-1", RoleName="role-a")
    got = env.iam.get_instance_profile(InstanceProfileName="plain-1")["InstanceProfile"]
    assert got["Roles"][0]["RoleName"] == "role-a"
    names = [p["InstanceProfileName"] for p in env.iam.list_instance_profiles()["InstanceProfiles"]]
    assert names == ["plain-1"], names
    expect_client_error(lambda: env.iam.get_instance_profile(InstanceProfileName="nope"),
                        "NoSuchEntity", 404)
    ids = run_instances(env, 1)
    d = env.ec2.describe_instances(InstanceIds=ids)
    assert d["Reservations"][0]["Instances"][0]["InstanceId"] == ids[0]
    calls = env.calls()
    actions = [(c["service"], c["action"]) for c in calls]
    assert ("sts", "GetCallerIdentity") in actions, actions
    assert ("iam", "CreateInstanceProfile") in actions
    assert ("ec2", "RunInstances") in actions
    assert all(c["fault"] is None for c in calls)
    nse = [c for c in calls if c["action"] == "GetInstanceProfile" and c["status"] == 404]
    assert len(nse) == 1, calls


def t_path_prefix(env):
    for name, path in [("pp-a1", "/a/"), ("pp-a2", "/a/x/"), ("pp-b1", "/b/"), ("pp-root", "/")]:
        env.iam.create_instance_profile(InstanceProfileName=name, Path=path)
    env.iam.create_role(RoleName="role-x", AssumeRolePolicyDocument=ASSUME)
    env.iam.add_role_to_instance_profile(InstanceProfileName="pp-a1", RoleName="role-x")
    got = sorted(p["InstanceProfileName"]
                 for p in env.iam.list_instance_profiles(PathPrefix="/a/")["InstanceProfiles"])
    assert got == ["pp-a1", "pp-a2"], got
    a1 = [p for p in env.iam.list_instance_profiles(PathPrefix="/a/")["InstanceProfiles"]
          if p["InstanceProfileName"] == "pp-a1"][0]
    assert [r["RoleName"] for r in a1["Roles"]] == ["role-x"], a1
    allp = env.iam.list_instance_profiles()["InstanceProfiles"]
    assert len(allp) == 4
    assert env.iam.list_instance_profiles(PathPrefix="/zzz/")["InstanceProfiles"] == []


def t_paging_profiles(env):
    env.iam.create_role(RoleName="role-p", AssumeRolePolicyDocument=ASSUME)
    for i in range(5):
        env.iam.create_instance_profile(InstanceProfileName=f"pg-{i}", Path="/pg/")
        env.iam.add_role_to_instance_profile(InstanceProfileName=f"pg-{i}", RoleName="role-p")
    env.iam.create_instance_profile(InstanceProfileName="other", Path="/other/")
    env.config(page_size=2)
    first = env.iam.list_instance_profiles()
    assert first["IsTruncated"] is True and first["Marker"] == "fp-2", first
    assert len(first["InstanceProfiles"]) == 2
    names = []
    for page in env.iam.get_paginator("list_instance_profiles").paginate():
        names += [p["InstanceProfileName"] for p in page["InstanceProfiles"]]
        for p in page["InstanceProfiles"]:
            if p["InstanceProfileName"].startswith("pg-"):
                assert [r["RoleName"] for r in p["Roles"]] == ["role-p"], p
    assert sorted(names) == ["other"] + [f"pg-{i}" for i in range(5)], names
    lists = [c for c in env.calls() if c["action"] == "ListInstanceProfiles"]
    assert len(lists) == 1 + 3, lists
    # PathPrefix + paging + smaller request limit
    names = []
    pages = 0
    for page in env.iam.get_paginator("list_instance_profiles").paginate(
            PathPrefix="/pg/", PaginationConfig={"PageSize": 1}):
        pages += 1
        names += [p["InstanceProfileName"] for p in page["InstanceProfiles"]]
    assert sorted(names) == [f"pg-{i}" for i in range(5)] and pages == 5, (names, pages)
    last = env.iam.list_instance_profiles(Marker="fp-4")
    assert last["IsTruncated"] is False and "Marker" not in last and len(last["InstanceProfiles"]) == 2
    expect_client_error(lambda: env.iam.list_instance_profiles(Marker="bogus"), "ValidationError", 400)
    # ListInstanceProfilesForRole and ListRoles page too
    names = []
    for page in env.iam.get_paginator("list_instance_profiles_for_role").paginate(RoleName="role-p"):
        names += [p["InstanceProfileName"] for p in page["InstanceProfiles"]]
    assert sorted(names) == [f"pg-{i}" for i in range(5)], names
    for i in range(4):
        env.iam.create_role(RoleName=f"r-{i}", AssumeRolePolicyDocument=ASSUME)
    roles = []
    for page in env.iam.get_paginator("list_roles").paginate():
        assert len(page["Roles"]) <= 2
        roles += [r["RoleName"] for r in page["Roles"]]
    assert sorted(roles) == sorted(["role-p"] + [f"r-{i}" for i in range(4)]), roles


def t_paging_instances_and_associations(env):
    ids = run_instances(env, 5)
    for i, iid in enumerate(ids[:4]):
        env.iam.create_instance_profile(InstanceProfileName=f"as-{i}")
        env.ec2.associate_iam_instance_profile(InstanceId=iid, IamInstanceProfile={"Name": f"as-{i}"})
    full = env.ec2.describe_instances()
    assert len(full["Reservations"]) == 5 and "NextToken" not in full
    full_assoc = env.ec2.describe_iam_instance_profile_associations()["IamInstanceProfileAssociations"]
    assert len(full_assoc) == 4
    env.config(page_size=2)
    first = env.ec2.describe_instances()
    assert len(first["Reservations"]) == 2 and first["NextToken"] == "fp-2", first.keys()
    seen = []
    for page in env.ec2.get_paginator("describe_instances").paginate():
        for r in page["Reservations"]:
            for inst in r["Instances"]:
                seen.append(inst["InstanceId"])
                # nested <item> lists survived
                assert inst["BlockDeviceMappings"] and inst["NetworkInterfaces"], inst
                assert inst["NetworkInterfaces"][0]["Groups"], inst
    assert sorted(seen) == sorted(ids), (seen, ids)
    di = [c for c in env.calls() if c["action"] == "DescribeInstances"]
    assert len(di) == 1 + 1 + 3, di  # full, first page, 3 paginated pages
    # request MaxResults smaller than page_size wins (5 pages)
    pages = list(env.ec2.get_paginator("describe_instances").paginate(
        PaginationConfig={"PageSize": 1}))
    assert len(pages) == 5 and sum(len(p["Reservations"]) for p in pages) == 5
    # filters still applied upstream
    one = env.ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": [ids[3]]}])
    assert [i["InstanceId"] for r in one["Reservations"] for i in r["Instances"]] == [ids[3]]
    assoc = []
    n_pages = 0
    for page in env.ec2.get_paginator("describe_iam_instance_profile_associations").paginate():
        n_pages += 1
        assert len(page["IamInstanceProfileAssociations"]) <= 2
        assoc += page["IamInstanceProfileAssociations"]
    assert n_pages == 2
    assert sorted(a["AssociationId"] for a in assoc) == sorted(a["AssociationId"] for a in full_assoc)
    assert all(a["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::") for a in assoc)
    expect_client_error(lambda: env.ec2.describe_instances(NextToken="garbage"),
                        "InvalidParameterValue", 400)


def t_moto_paging_followed(env):
    # moto answers DescribeIamInstanceProfileAssociations 100 at a time whatever
    # is asked: the proxy must follow moto's own paging before re-paging.
    r = env.ec2.run_instances(ImageId=AMI, MinCount=103, MaxCount=103)
    ids = [i["InstanceId"] for i in r["Instances"]]
    env.iam.create_instance_profile(InstanceProfileName="many")
    for iid in ids:
        env.ec2.associate_iam_instance_profile(InstanceId=iid, IamInstanceProfile={"Name": "many"})
    env.config(page_size=40)
    pages = list(env.ec2.get_paginator("describe_iam_instance_profile_associations").paginate())
    got = [a["InstanceId"] for p in pages for a in p["IamInstanceProfileAssociations"]]
    assert len(pages) == 3 and sorted(got) == sorted(ids), (len(pages), len(got))
    pages = list(env.ec2.get_paginator("describe_instances").paginate())
    got = [i["InstanceId"] for p in pages for r in p["Reservations"] for i in r["Instances"]]
    assert len(pages) == 1 and sorted(got) == sorted(ids), (len(pages), len(got))


def t_propagation(env):
    env.config(propagation_seconds=1.2)
    ids = run_instances(env, 2)
    t0 = time.time()
    prof = env.iam.create_instance_profile(InstanceProfileName="fresh")["InstanceProfile"]
    e = expect_client_error(lambda: env.ec2.associate_iam_instance_profile(
        InstanceId=ids[0], IamInstanceProfile={"Name": "fresh"}), "InvalidParameterValue", 400)
    assert "Value (fresh) for parameter iamInstanceProfile.name is invalid" in str(e), str(e)
    e = expect_client_error(lambda: env.ec2.associate_iam_instance_profile(
        InstanceId=ids[1], IamInstanceProfile={"Arn": prof["Arn"]}), "InvalidParameterValue", 400)
    assert "iamInstanceProfile.arn" in str(e) and prof["Arn"] in str(e), str(e)
    # an older profile (unknown to the proxy) is not affected
    assert not env.ec2.describe_iam_instance_profile_associations()["IamInstanceProfileAssociations"]
    assoc = [c for c in env.calls() if c["action"] == "AssociateIamInstanceProfile"]
    assert [c["status"] for c in assoc] == [400, 400], assoc
    time.sleep(max(0.0, 1.3 - (time.time() - t0)))
    r = env.ec2.associate_iam_instance_profile(InstanceId=ids[0], IamInstanceProfile={"Name": "fresh"})
    assert r["IamInstanceProfileAssociation"]["InstanceId"] == ids[0]


def t_read_lag(env):
    env.config(iam_read_lag_seconds=1.0)
    env.iam.create_instance_profile(InstanceProfileName="old")
    time.sleep(1.05)
    t0 = time.time()
    env.iam.create_instance_profile(InstanceProfileName="lagging")
    e = expect_client_error(lambda: env.iam.get_instance_profile(InstanceProfileName="lagging"),
                            "NoSuchEntity", 404)
    assert "Instance Profile lagging cannot be found." in str(e)
    names = [p["InstanceProfileName"] for p in env.iam.list_instance_profiles()["InstanceProfiles"]]
    assert names == ["old"], names
    env.iam.get_instance_profile(InstanceProfileName="old")
    time.sleep(max(0.0, 1.05 - (time.time() - t0)))
    env.iam.get_instance_profile(InstanceProfileName="lagging")
    names = [p["InstanceProfileName"] for p in env.iam.list_instance_profiles()["InstanceProfiles"]]
    assert sorted(names) == ["lagging", "old"], names


def t_faults(env):
    env.config(error_rate=1.0, fault_kinds=["throttle"], fault_services=["iam"])
    expect_client_error(lambda: env.iam.list_instance_profiles(), "Throttling", 400)
    env.ec2.describe_instances()  # ec2 untouched
    env.config(fault_services=["ec2"])
    expect_client_error(lambda: env.ec2.describe_instances(), "RequestLimitExceeded", 503)
    env.iam.list_instance_profiles()
    env.config(fault_services=None, fault_kinds=["500"])
    expect_client_error(lambda: env.iam.list_roles(), "ServiceFailure", 500)
    expect_client_error(lambda: env.ec2.describe_instances(), "InternalError", 500)
    env.config(fault_kinds=["503"])
    expect_client_error(lambda: env.iam.list_roles(), "ServiceUnavailable", 503)
    expect_client_error(lambda: env.ec2.describe_instances(), "Unavailable", 503)
    # fault_actions restricts
    env.config(fault_kinds=["throttle"], fault_actions=["CreateInstanceProfile"])
    env.iam.list_roles()
    expect_client_error(lambda: env.iam.create_instance_profile(InstanceProfileName="t1"),
                        "Throttling", 400)
    # reset_before: not applied
    env.config(fault_kinds=["reset_before"])
    try:
        env.iam.create_instance_profile(InstanceProfileName="lost-before")
        raise AssertionError("expected connection error")
    except botocore.exceptions.ClientError:
        raise
    except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError):
        pass
    # reset_after: applied, response lost
    env.config(fault_kinds=["reset_after"])
    try:
        env.iam.create_instance_profile(InstanceProfileName="lost-after")
        raise AssertionError("expected connection error")
    except botocore.exceptions.ClientError:
        raise
    except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError):
        pass
    env.config(error_rate=0.0, fault_actions=None)
    expect_client_error(lambda: env.iam.get_instance_profile(InstanceProfileName="lost-before"),
                        "NoSuchEntity", 404)
    expect_client_error(lambda: env.iam.get_instance_profile(InstanceProfileName="t1"),
                        "NoSuchEntity", 404)
    env.iam.get_instance_profile(InstanceProfileName="lost-after")
    # latency
    env.config(error_rate=1.0, fault_kinds=["latency"], latency_ms=300)
    t0 = time.time()
    env.sts.get_caller_identity()
    assert time.time() - t0 >= 0.3
    env.config(error_rate=0.0)
    faults = [(c["action"], c["fault"], c["status"]) for c in env.calls() if c["fault"]]
    assert ("CreateInstanceProfile", "reset_before", 0) in faults, faults
    assert ("CreateInstanceProfile", "reset_after", 0) in faults, faults
    assert ("ListInstanceProfiles", "throttle", 400) in faults, faults
    assert ("DescribeInstances", "throttle", 503) in faults, faults
    assert ("GetCallerIdentity", "latency", 200) in faults, faults
    # scripted faults: deterministic, consumed once
    env.config(scripted_faults=[{"kind": "throttle", "action": "ListRoles", "count": 2}])
    expect_client_error(lambda: env.iam.list_roles(), "Throttling")
    expect_client_error(lambda: env.iam.list_roles(), "Throttling")
    env.iam.list_roles()


def t_scripted_only_kinds(env):
    # never drawn at random
    status, body = env.control("POST", "config", {"fault_kinds": ["hang"]})
    assert status == 400, body
    # html_502: a load balancer's page, not forwarded, not AWS's format
    env.config(scripted_faults=[{"kind": "html_502", "action": "ListRoles"}])
    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=10)
    conn.request("POST", "/", body="Action=ListRoles&Version=2010-05-08",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    resp = conn.getresponse()
    page = resp.read().decode()
    conn.close()
    assert resp.status == 502 and resp.getheader("Content-Type") == "text/html", resp.status
    assert "<title>502 Bad Gateway</title>" in page and "<Error>" not in page, page
    env.iam.list_roles()  # consumed
    # hang: held hang_seconds, then forwarded and answered
    env.config(hang_seconds=0.5, scripted_faults=[{"kind": "hang", "action": "ListRoles"}])
    t0 = time.time()
    env.iam.list_roles()
    assert time.time() - t0 >= 0.5
    faults = [(c["action"], c["fault"], c["status"]) for c in env.calls() if c["fault"]]
    assert faults == [("ListRoles", "html_502", 502), ("ListRoles", "hang", 200)], faults


def t_random_rate_and_seed(env):
    env.control("POST", "reset", {"seed": 42})
    env.config(error_rate=0.5, fault_kinds=["throttle"], fault_services=["sts"])

    def outcomes():
        out = []
        for _ in range(30):
            try:
                env.sts.get_caller_identity()
                out.append(0)
            except botocore.exceptions.ClientError:
                out.append(1)
        return out

    a = outcomes()
    assert 3 < sum(a) < 27, a
    env.control("POST", "reset", {})  # same seed again
    env.config(error_rate=0.5, fault_kinds=["throttle"], fault_services=["sts"])
    assert outcomes() == a


def t_moto_gap(env):
    env.iam.create_role(RoleName="gap-role", AssumeRolePolicyDocument=ASSUME)
    env.iam.create_instance_profile(InstanceProfileName="gap")
    e = expect_client_error(lambda: env.iam.remove_role_from_instance_profile(
        InstanceProfileName="gap", RoleName="gap-role"), "NoSuchEntity", 404)
    assert "gap-role" in str(e)
    env.config(translate_moto_gaps=False)
    try:
        env.iam.remove_role_from_instance_profile(InstanceProfileName="gap", RoleName="gap-role")
        raise AssertionError("expected failure")
    except botocore.exceptions.ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    except Exception as e:  # noqa: BLE001 - botocore cannot parse moto's HTML 500 page
        assert "500 Internal Server Error" in str(e), e


def t_concurrency_and_keepalive(env):
    errors = []

    def worker(i):
        try:
            env.iam.create_instance_profile(InstanceProfileName=f"cc-{i}")
            env.iam.get_instance_profile(InstanceProfileName=f"cc-{i}")
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(env.iam.list_instance_profiles()["InstanceProfiles"]) == 16
    # several requests over one keep-alive connection
    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=5)
    for _ in range(3):
        conn.request("GET", "/_fault/health")
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read()) == {"ok": True}
    conn.close()


def t_sqs_json_protocol(env):
    # SQS speaks JSON with X-Amz-Target: logged by action, faults in its format.
    url = env.sqs.create_queue(QueueName="events")["QueueUrl"]
    env.sqs.send_message(QueueUrl=url, MessageBody="{}")
    got = env.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert [m["Body"] for m in got["Messages"]] == ["{}"], got
    actions = [(c["service"], c["action"]) for c in env.calls()]
    assert ("sqs", "ReceiveMessage") in actions, actions
    env.config(scripted_faults=[{"kind": "access_denied", "action": "ReceiveMessage"},
                                {"kind": "500", "service": "sqs"}])
    e = expect_client_error(lambda: env.sqs.receive_message(QueueUrl=url), "AccessDenied", 403)
    assert "sqs:receivemessage" in str(e), e
    try:
        env.sqs.get_queue_url(QueueName="events")
        raise AssertionError("expected a 500")
    except botocore.exceptions.ClientError as e:
        assert err_code(e)[1] == 500, e
    faults = [(c["action"], c["fault"]) for c in env.calls() if c["fault"]]
    assert faults == [("ReceiveMessage", "access_denied"), ("GetQueueUrl", "500")], faults


def t_reset(env):
    env.config(page_size=3, error_rate=0.3, propagation_seconds=5)
    env.iam.list_roles()
    assert env.calls()
    status, body = env.control("POST", "reset", {})
    assert status == 200 and body["ok"] is True
    assert env.calls() == []
    cfg = env.control("GET", "config")[1]
    assert cfg["page_size"] is None and cfg["error_rate"] == 0.0 and cfg["propagation_seconds"] == 0


def t_sigterm(env):
    p = subprocess.Popen([sys.executable, PROXY, "--upstream", f"http://127.0.0.1:{env.moto_port}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line.startswith("READY "), line
    p.terminate()
    rc = p.wait(5)
    out, err = p.communicate()
    assert rc == 0 and out == "" and err == "", (rc, out, err)


TESTS = [
    t_health_and_ready, t_plain_forwarding, t_path_prefix, t_paging_profiles,
    t_paging_instances_and_associations, t_moto_paging_followed, t_propagation, t_read_lag, t_faults,
    t_scripted_only_kinds, t_random_rate_and_seed, t_moto_gap, t_concurrency_and_keepalive, t_sqs_json_protocol, t_reset, t_sigterm,
]


def main():
    start = time.time()
    env = Env()
    passed = failed = 0
    try:
        for test in TESTS:
            env.reset_all()
            t0 = time.time()
            try:
                test(env)
                passed += 1
                print(f"ok   {test.__name__} ({time.time() - t0:.2f}s)")
            except Exception:  # noqa: BLE001
                failed += 1
                print(f"FAIL {test.__name__}")
                traceback.print_exc(file=sys.stdout)
        tb = env.proxy_tracebacks()
        if tb:
            failed += 1
            print("FAIL proxy logged tracebacks:")
            print(tb)
    finally:
        env.close()
    print(f"total {time.time() - start:.1f}s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
