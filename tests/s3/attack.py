"""Attacks fogd's S3 endpoint as a hostile service owner and a stranger on the network would
(issue 30's findings 1-7), with real clients: boto3, requests, raw sockets.
Usage: attack.py API_URL PASSWORD WORKDIR DATA_DIR FOGD_PID. One line per step; exits non-zero
on the first that fails. The node runs tests/s3/attack.yaml with gateway.body_timeout 2s."""
import os
import socket
import sys
import threading
import time
import uuid

import boto3
import botocore
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

api, password, work, data_dir, pid = sys.argv[1:6]
admin = ("oscar", password)


KEEP_GOING = os.environ.get("ATTACK_KEEP_GOING") == "1"  # to list every finding on an older build
failed = []


def step(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (": " + str(detail) if detail else ""), flush=True)
    if not ok:
        failed.append(name)
        if not KEEP_GOING:
            sys.exit(1)


def error_code(fn):
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    return None, 200


def rss_mib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


def api_call(method, path, body=None, auth=admin):
    r = requests.request(method, f"{api}{path}", json=body, auth=auth, timeout=30)
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text


cfg = requests.get(f"{api}/system/config", auth=admin, timeout=10).json()["minio_provider"]
endpoint, region = cfg["endpoint"], cfg["region"]
host, port = endpoint.split("//")[1].split(":")
port = int(port)


def client(access, secret):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
                        region_name=region, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


s3 = client(cfg["access_key"], cfg["secret_key"])
tokens = {n: api_call("GET", f"/system/services/{n}")[1]["token"] for n in ("planter", "anon")}
planter = client("planter", tokens["planter"])
anon_keys = client("anon", tokens["anon"])

# A canary outside the store: nothing may read it, list it or write an xattr onto it.
canary = os.path.join(data_dir, "..", "canary-pin.txt")
with open(canary, "w") as f:
    f.write("4711")

# --- 1. ListObjects prefixes that climb out of the bucket ------------------------------------
s3.create_bucket(Bucket="vault")
s3.put_object(Bucket="vault", Key="files/seed.txt", Body=b"seed")
for prefix in ["../", "../../", "../../../", "files/../../", "./", "a\x00/"]:
    code = error_code(lambda: planter.list_objects_v2(Bucket="vault", Prefix=prefix))
    step(f"prefix {prefix!r} is refused", code == ("InvalidArgument", 400), code)
listed = s3.list_objects_v2(Bucket="vault").get("Contents", [])
step("a whole listing stays inside the bucket", [o["Key"] for o in listed] == ["files/seed.txt"], listed)
try:
    os.getxattr(canary, "user.fogd.etag")
    marked = True
except OSError:
    marked = False
step("nothing outside the store was given an xattr", not marked)

# --- 2. Links a service's script plants in its mounted bucket --------------------------------
with open(os.path.join(work, "go.txt"), "w") as f:
    f.write("go")
s3.upload_file(os.path.join(work, "go.txt"), "plant", "in/go.txt")
deadline = time.time() + 60
while not os.path.islink(os.path.join(data_dir, "store/vault/files/hostroot")):
    step("the planter ran", time.time() < deadline)
    time.sleep(0.2)
for who, c in (("the service", planter), ("the admin", s3)):
    for key in ["files/hostroot/etc/hostname", "files/up/s3-keys", "files/up/journal.sqlite", "files/hostname"]:
        code = error_code(lambda: c.get_object(Bucket="vault", Key=key))
        step(f"{who}: GET {key} through a link is no object", code == ("NoSuchKey", 404), code)
        code = error_code(lambda: c.head_object(Bucket="vault", Key=key))
        step(f"{who}: HEAD {key} neither", code[1] == 404, code)
    target = f"fogd-pwned-{uuid.uuid4().hex}"
    code = error_code(lambda: c.put_object(Bucket="vault", Key=f"files/hostroot/tmp/{target}", Body=b"x"))
    step(f"{who}: PUT through a link is refused", code == ("InvalidArgument", 400)
         and not os.path.exists(f"/tmp/{target}"), code)
    code = error_code(lambda: c.copy_object(Bucket="vault", Key="files/stolen",
                                            CopySource={"Bucket": "vault", "Key": "files/hostroot/etc/hostname"}))
    step(f"{who}: a copy from behind a link is refused", code == ("NoSuchKey", 404), code)
keys = [o["Key"] for o in planter.list_objects_v2(Bucket="vault").get("Contents", [])]
step("listings skip the links", keys == ["files/real/file.txt", "files/seed.txt"], keys)
planter.delete_object(Bucket="vault", Key="files/hostname")
step("DELETE of a link removes the link, not its target",
     not os.path.lexists(os.path.join(data_dir, "store/vault/files/hostname")) and os.path.exists("/etc/hostname"))
step("a service's own file is served", planter.get_object(Bucket="vault", Key="files/real/file.txt")["Body"].read() == b"mine\n")

# --- 9. Local scripts: the data folder and other services' secrets are out of their sight ----
s3.put_object(Bucket="cameras", Key="incoming/cam9/slow.jpg", Body=b"keeps anon running")
time.sleep(1)  # anon is running now, its secret in its environment
with open(os.path.join(work, "snoop.txt"), "w") as f:
    f.write("snoop")
s3.upload_file(os.path.join(work, "snoop.txt"), "snoop", "in/go.txt")
deadline = time.time() + 60
found = None
while found is None:
    try:
        found = s3.get_object(Bucket="snoop", Key="out/found.txt")["Body"].read().decode()
    except botocore.exceptions.ClientError:
        step("the snoop ran", time.time() < deadline)
        time.sleep(0.2)
lines = found.splitlines()
step("a script reads no journal, S3 keys or admin password", not any(l.startswith("read ") for l in lines), lines)
step("  sees only its own folder of the data folder",
     [l for l in lines if l.startswith("ls ")] == ["ls store", "ls work"]
     and len([l for l in lines if l.startswith("work ")]) == 1
     and [l for l in lines if l.startswith("store ")] == ["store vault"], lines)
step("  finds no other service's secret in any process", not any(l.startswith("environ ") for l in lines), lines)
step("  and still has its input and its mounted bucket", "input snoop" in lines and "mount real" in lines, lines)

# --- 3. Memory and connections before authentication -----------------------------------------
before = rss_mib()


def form_post():
    try:
        r = requests.post(f"{endpoint}/vault", files={"key": (None, "x"), "file": ("f", b"\0" * (100 << 20))},
                          timeout=30)
        return r.status_code
    except requests.exceptions.RequestException:
        return "closed"


results = []
threads = [threading.Thread(target=lambda: results.append(form_post())) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
grown = rss_mib() - before
step("4 anonymous 100 MiB form uploads are turned away unread",
     all(r in (501, "closed") for r in results) and grown < 64, f"{results}, RSS +{grown:.0f} MiB")


def signed_head(key, length):
    """The head of a PUT signed with the planter's keys (the body is not signed, as S3 allows)."""
    req = AWSRequest(method="PUT", url=f"{endpoint}/vault/{key}", data=b"",
                     headers={"Content-Length": str(length), "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    S3SigV4Auth(Credentials("planter", tokens["planter"]), "s3", region).add_auth(req)
    lines = [f"PUT /vault/{key} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def stalled(head):
    s = socket.create_connection((host, port), timeout=15)
    s.sendall(head + b"partial")
    return s


def closed_within(s, seconds):
    s.settimeout(seconds)
    t0 = time.time()
    try:
        while s.recv(4096):
            pass
    except (socket.timeout, TimeoutError):
        return None
    except OSError:
        pass
    return time.time() - t0


socks = [stalled(signed_head(f"files/stall-{i}", 1 << 20)) for i in range(16)]
anon_socks = [stalled(b"PUT /vault/files/anon HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n") for _ in range(64)]
t0 = time.time()
planter.put_object(Bucket="vault", Key="files/during.txt", Body=b"served")
step("the service is served while stalled uploads are open", time.time() - t0 < 5)
waits = [closed_within(s, 8) for s in anon_socks]
step("anonymous uploads are answered on their head", all(w is not None and w < 2 for w in waits), waits[:4])
waits = [closed_within(s, 10) for s in socks]
step("stalled signed uploads end within gateway.body_timeout (2 s)", all(w is not None for w in waits)
     and max(waits) < 6, [round(w, 1) if w else w for w in waits])
for s in socks + anon_socks:
    s.close()
left = [n for n in os.listdir(os.path.join(data_dir, "store/vault/files")) if n.startswith(".fogd-tmp-")]
step("no partial file is left", not left, left)

# --- 4. Presigned URLs: one operation on one key ---------------------------------------------
s3.create_bucket(Bucket="private")
s3.put_object(Bucket="private", Key="secret.txt", Body=b"top secret")
s3.create_bucket(Bucket="drop")
code, p = api_call("POST", "/system/buckets/drop/presign", {"object_key": "up.txt", "operation": "upload"})
r = requests.put(p["url"], data=b"", headers={"x-amz-copy-source": "/private/secret.txt"}, timeout=10)
step("an unsigned x-amz-copy-source on a presigned URL is refused",
     r.status_code == 403 and "not signed" in r.text, (r.status_code, r.text[:200]))
code = error_code(lambda: s3.head_object(Bucket="drop", Key="up.txt"))
step("  and nothing was copied", code[1] == 404, code)
r = requests.put(p["url"], data=b"fine", timeout=10)
step("  the URL still uploads", r.status_code == 200, r.status_code)
r = requests.get(p["url"], timeout=10)
step("  an upload URL does not download", r.status_code == 403, r.status_code)

# --- 5. The raw area: no metadata out, never shared, never forged ----------------------------
s3.put_object(Bucket="cameras", Key="incoming/cam1/f1.jpg", Body=b"raw frame")
code = error_code(lambda: s3.head_object(Bucket="cameras", Key="incoming/cam1/f1.jpg"))
step("HEAD of raw footage is refused", code[1] == 403, code)
code = error_code(lambda: s3.list_objects_v2(Bucket="cameras", Prefix="incoming/"))
step("a listing inside the raw area is refused", code == ("AccessDenied", 403), code)
keys = [o["Key"] for o in s3.list_objects_v2(Bucket="cameras").get("Contents", [])]
pre = [p["Prefix"] for p in s3.list_objects_v2(Bucket="cameras", Delimiter="/").get("CommonPrefixes", [])]
step("a listing of the bucket leaves the raw area out", not any(k.startswith("incoming/") for k in keys)
     and "incoming/" not in pre, (keys, pre))
code = error_code(lambda: s3.put_object(Bucket="cameras", Key="incoming/cam1/f1.jpg", Body=b"forged"))
step("a raw item is never replaced", code == ("AccessDenied", 403), code)
code = error_code(lambda: anon_keys.delete_object(Bucket="cameras", Key="incoming/cam1/f1.jpg"))
step("a service may not delete raw footage", code == ("AccessDenied", 403), code)
for vis in ("public", "restricted"):
    code, body = api_call("PUT", "/system/buckets", {"bucket_name": "cameras", "visibility": vis, "allowed_users": ["planter"]})
    step(f"the ingest bucket cannot be made {vis}", code == 400, (code, body))
code = error_code(lambda: planter.put_object(Bucket="cameras", Key="incoming/cam1/f2.jpg", Body=b"forged"))
step("another service's keys cannot write raw footage", code == ("AccessDenied", 403), code)

# --- 6. Bucket rules are the same through S3 and the API -------------------------------------
code = error_code(lambda: s3.delete_bucket(Bucket="idle"))
step("S3 DeleteBucket of an empty bucket a service uses: 409", code[1] == 409, code)
s3.create_bucket(Bucket="pub")
api_call("PUT", "/system/buckets", {"bucket_name": "pub", "visibility": "public"})
s3.delete_bucket(Bucket="pub")
s3.create_bucket(Bucket="pub")
code, one = api_call("GET", "/system/buckets/pub")
step("a bucket re-created through S3 starts private", one.get("visibility") == "private", one.get("visibility"))
code = error_code(lambda: planter.put_object(Bucket="pub", Key="x", Body=b"x"))
step("  and other services' keys are refused", code == ("AccessDenied", 403), code)

# --- 7. Multipart uploads left behind ---------------------------------------------------------
up = planter.create_multipart_upload(Bucket="vault", Key="files/abandoned.bin")
planter.upload_part(Bucket="vault", Key="files/abandoned.bin", UploadId=up["UploadId"], PartNumber=1,
                    Body=b"\1" * (6 << 20))
listed = s3.list_multipart_uploads(Bucket="vault").get("Uploads", [])
step("the admin lists every upload", [u["UploadId"] for u in listed] == [up["UploadId"]], listed)
step("  and the uploader its own", [u["UploadId"] for u in planter.list_multipart_uploads(Bucket="vault").get("Uploads", [])]
     == [up["UploadId"]])
code, one = api_call("GET", "/system/buckets/vault")
step("parked parts count in the bucket's usage", one["storage_usage"] >= 6 << 20, one["storage_usage"])
s3.abort_multipart_upload(Bucket="vault", Key="files/abandoned.bin", UploadId=up["UploadId"])
step("the admin aborts it", s3.list_multipart_uploads(Bucket="vault").get("Uploads", []) == [])

if failed:
    print(f"{len(failed)} steps failed")
    sys.exit(1)
print("all steps passed")
