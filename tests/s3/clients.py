"""Drives fogd's S3 endpoint with real S3 clients, as an OSCAR user would: oscar-python's storage
client (which finds the endpoint and keys through /system/config), boto3 and rclone.
Usage: clients.py API_URL PASSWORD WORKDIR. Exits non-zero on any mismatch; one line per step.
The node runs tests/s3/upper.yaml (s3in/in -> upper-cased -> s3in/out)."""
import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
import time

import boto3
import botocore
import requests
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from oscar_python.client import Client

api, password, work = sys.argv[1:4]


def step(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (": " + str(detail) if detail else ""), flush=True)
    if not ok:
        sys.exit(1)


def error_code(fn):
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    return None, 200


admin = ("oscar", password)
oscar = Client({"cluster_id": "fogd", "endpoint": api, "user": "oscar", "password": password, "ssl": False})
cfg = oscar.get_cluster_config().json()
mp = cfg["minio_provider"]
step("/system/config announces the endpoint", mp["endpoint"].startswith("http://127.0.0.1:") and mp["access_key"],
     mp["endpoint"])


def wait_jobs(n, timeout=60):
    deadline = time.time() + timeout
    while True:
        jobs = oscar.list_jobs("upper").json()["jobs"]
        done = [j for j in jobs.values() if j["status"] in ("Succeeded", "Failed")]
        if len(done) >= n:
            return jobs
        if time.time() > deadline:
            step(f"{n} job(s) finish", False, json.dumps(jobs))
        time.sleep(0.2)


# --- 1. oscar-python's storage client: upload triggers the service, the result comes back ----
storage = oscar.create_storage_client("upper")
src = os.path.join(work, "hello.txt")
with open(src, "w") as f:
    f.write("hello through s3\n")
storage.upload_file("minio.default", src, "s3in/in")
jobs = wait_jobs(1)
step("an upload into the input path runs the service", all(j["status"] == "Succeeded" for j in jobs.values()),
     json.dumps(jobs))
listed = storage.list_files_from_path("minio.default", "s3in/out")
keys = [o["Key"] for o in listed.get("Contents", [])]
step("list_files_from_path lists the output", keys == ["out/hello.txt.up"], keys)
os.makedirs(os.path.join(work, "down"), exist_ok=True)
storage.download_file("minio.default", os.path.join(work, "down"), "s3in/out/hello.txt.up")
got = open(os.path.join(work, "down", "hello.txt.up")).read()
step("download_file fetches the result", got == "HELLO THROUGH S3\n", repr(got))

# --- 2. boto3 ------------------------------------------------------------------------------
s3 = boto3.client("s3", endpoint_url=mp["endpoint"], aws_access_key_id=mp["access_key"],
                  aws_secret_access_key=mp["secret_key"], region_name=mp["region"],
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
s3.create_bucket(Bucket="bulk")
code = error_code(lambda: s3.create_bucket(Bucket="bulk"))
step("creating a bucket twice", code == ("BucketAlreadyOwnedByYou", 409), code)
names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
step("list_buckets", "bulk" in names and "s3in" in names, names)

# Multipart upload of 100 MB (parts of 16 MB), then whole and ranged reads.
big = os.path.join(work, "big.bin")
with open(big, "wb") as f:
    block = os.urandom(1 << 20)
    for i in range(100):
        f.write(bytes([i]) + block[1:])
want = hashlib.sha256(open(big, "rb").read()).hexdigest()
t0 = time.time()
s3.upload_file(big, "bulk", "dir/big.bin",
               Config=TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=16 << 20, max_concurrency=4))
up = time.time() - t0
head = s3.head_object(Bucket="bulk", Key="dir/big.bin")
step("multipart upload of 100 MB", head["ContentLength"] == 100 << 20 and head["ETag"].strip('"').endswith("-7"),
     f"{head['ETag']} in {up:.1f} s")
s3.download_file("bulk", "dir/big.bin", os.path.join(work, "big.back"))
step("the download is the upload, byte for byte",
     hashlib.sha256(open(os.path.join(work, "big.back"), "rb").read()).hexdigest() == want)
raw = open(big, "rb").read()
r = s3.get_object(Bucket="bulk", Key="dir/big.bin", Range="bytes=5000000-5000999")
step("ranged GET", r["Body"].read() == raw[5000000:5001000] and r["ContentRange"] == f"bytes 5000000-5000999/{100 << 20}",
     r["ContentRange"])
r = s3.get_object(Bucket="bulk", Key="dir/big.bin", Range="bytes=-10")
step("suffix range", r["Body"].read() == raw[-10:])
code = error_code(lambda: s3.get_object(Bucket="bulk", Key="dir/big.bin", Range=f"bytes={200 << 20}-"))
step("a range past the end", code == ("InvalidRange", 416), code)
del raw

# Keys with what URLs and XML treat specially come back as they went in (boto3 lists with
# encoding-type=url and decodes), through both listings and a paged v1 listing's markers.
odd = ["odd/a b+c%d.txt", "odd/ü & <x>.txt", "odd/q?x=1#y.txt"]
for k in odd:
    s3.put_object(Bucket="bulk", Key=k, Body=k.encode())
v2 = [o["Key"] for o in s3.list_objects_v2(Bucket="bulk", Prefix="odd/")["Contents"]]
v1 = [o["Key"] for p in s3.get_paginator("list_objects").paginate(Bucket="bulk", Prefix="odd/", PaginationConfig={"PageSize": 1})
      for o in p.get("Contents", [])]
step("odd keys survive listings", sorted(v2) == sorted(odd) and sorted(v1) == sorted(odd)
     and all(s3.get_object(Bucket="bulk", Key=k)["Body"].read() == k.encode() for k in odd), (v2, v1))
s3.delete_objects(Bucket="bulk", Delete={"Objects": [{"Key": k} for k in odd]})

# A single PUT carries its MD5 as ETag (what rclone and `aws s3 sync` compare).
s3.put_object(Bucket="bulk", Key="small.txt", Body=b"abc")
etag = s3.head_object(Bucket="bulk", Key="small.txt")["ETag"].strip('"')
step("ETag is the MD5", etag == hashlib.md5(b"abc").hexdigest(), etag)

# Presigned GET and PUT (the PUT lands in the input path, so it triggers the service).
url = s3.generate_presigned_url("get_object", Params={"Bucket": "bulk", "Key": "small.txt"}, ExpiresIn=60)
r = requests.get(url, timeout=10)
step("presigned GET", r.status_code == 200 and r.content == b"abc", r.status_code)
# The same URL for another object (its signature no longer fits), and with a changed signature.
r = requests.get(url.replace("/small.txt?", "/dir/big.bin?"), timeout=10)
step("a presigned URL is for its own object only", r.status_code == 403, r.status_code)
sig = "X-Amz-Signature=" if "X-Amz-Signature=" in url else "Signature="
i = url.index(sig) + len(sig)
r = requests.get(url[:i] + ("0" if url[i] != "0" else "1") + url[i + 1:], timeout=10)
step("a tampered presigned URL is refused", r.status_code == 403, f"{r.status_code} ({sig})")
v4 = boto3.client("s3", endpoint_url=mp["endpoint"], aws_access_key_id=mp["access_key"],
                  aws_secret_access_key=mp["secret_key"], region_name=mp["region"],
                  config=Config(signature_version="s3v4"))
url = v4.generate_presigned_url("get_object", Params={"Bucket": "bulk", "Key": "small.txt"}, ExpiresIn=60)
r = requests.get(url, timeout=10)
i = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
bad = requests.get(url[:i] + ("0" if url[i] != "0" else "1") + url[i + 1:], timeout=10)
step("presigned GET, SigV4", "X-Amz-Signature=" in url and r.content == b"abc" and bad.status_code == 403,
     (r.status_code, bad.status_code))
url = v4.generate_presigned_url("get_object", Params={"Bucket": "bulk", "Key": "small.txt"}, ExpiresIn=1)
time.sleep(2)
r = requests.get(url, timeout=10)
step("an expired presigned URL is refused", r.status_code == 403, r.status_code)
url = s3.generate_presigned_url("put_object", Params={"Bucket": "s3in", "Key": "in/presigned.txt"}, ExpiresIn=60)
r = requests.put(url, data=b"put by url\n", timeout=10)
step("presigned PUT", r.status_code == 200, r.text)
jobs = wait_jobs(2)
got = s3.get_object(Bucket="s3in", Key="out/presigned.txt.up")["Body"].read()
step("the presigned PUT triggered the service", got == b"PUT BY URL\n", got)

# ListObjectsV2 paging over 2,500 keys.
s3.create_bucket(Bucket="many")
keys = [f"k/{i:05d}.txt" for i in range(2500)]
with concurrent.futures.ThreadPoolExecutor(16) as ex:
    list(ex.map(lambda k: s3.put_object(Bucket="many", Key=k, Body=k.encode()), keys))
pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket="many", PaginationConfig={"PageSize": 1000}))
listed = [o["Key"] for p in pages for o in p.get("Contents", [])]
step("ListObjectsV2 pages over 2,500 keys", len(pages) == 3 and listed == keys, f"{len(pages)} pages, {len(listed)} keys")
pages = list(s3.get_paginator("list_objects").paginate(Bucket="many", PaginationConfig={"PageSize": 1000}))
step("ListObjects (v1) pages too", sum(len(p.get("Contents", [])) for p in pages) == 2500, len(pages))
top = s3.list_objects_v2(Bucket="s3in", Delimiter="/")
step("delimiter listing", [p["Prefix"] for p in top.get("CommonPrefixes", [])] == ["in/", "out/"], top.get("CommonPrefixes"))
# OSCAR's bucket API pages the same bucket (1,000 objects a page, `page` to go on).
names, page, pages = [], "", 0
while True:
    r = requests.get(f"{api}/system/buckets/many", params={"page": page} if page else None, auth=admin, timeout=30)
    body = r.json()
    names += [o["object_name"] for o in body["objects"]]
    pages += 1
    if not body["is_truncated"]:
        break
    page = body["next_page"]
step("GET /system/buckets/{b} pages over 2,500 objects", r.status_code == 200 and pages == 3 and names == keys
     and body["storage_usage"] == sum(len(k) for k in keys), (pages, len(names), body.get("storage_usage")))
code = error_code(lambda: s3.delete_bucket(Bucket="many"))
step("a bucket with objects is not deleted", code == ("BucketNotEmpty", 409), code)
for i in range(0, 2500, 1000):
    s3.delete_objects(Bucket="many", Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})
s3.delete_bucket(Bucket="many")
step("delete_objects then delete_bucket", "many" not in [b["Name"] for b in s3.list_buckets()["Buckets"]])

# Refused: a wrong secret, an unknown key, no signature, a key that climbs out.
bad = boto3.client("s3", endpoint_url=mp["endpoint"], aws_access_key_id=mp["access_key"],
                   aws_secret_access_key="not-the-secret", region_name=mp["region"],
                   config=Config(retries={"max_attempts": 1}))
code = error_code(lambda: bad.get_object(Bucket="bulk", Key="small.txt"))
step("a wrong signature is refused", code == ("SignatureDoesNotMatch", 403), code)
code = error_code(lambda: bad.put_object(Bucket="s3in", Key="in/evil.txt", Body=b"x"))
step("and writes nothing", code[1] == 403 and error_code(lambda: s3.head_object(Bucket="s3in", Key="in/evil.txt"))[1] == 404, code)
unknown = boto3.client("s3", endpoint_url=mp["endpoint"], aws_access_key_id="nobody",
                       aws_secret_access_key="whatever1", region_name=mp["region"])
code = error_code(lambda: unknown.list_buckets())
step("an unknown access key is refused", code == ("InvalidAccessKeyId", 403), code)
anon = boto3.client("s3", endpoint_url=mp["endpoint"], region_name=mp["region"],
                    config=Config(signature_version=botocore.UNSIGNED))
code = error_code(lambda: anon.get_object(Bucket="bulk", Key="small.txt"))
step("an unsigned request is refused", code == ("AccessDenied", 403), code)
code = error_code(lambda: s3.put_object(Bucket="bulk", Key="a/../../escape.txt", Body=b"x"))
step("a key with `..` is refused", code[1] == 400 and not os.path.exists(os.path.join(work, "escape.txt")), code)

# Camera footage lands in ingest.path (cameras/incoming/) raw: it may be put, never read out.
s3.create_bucket(Bucket="cameras")
s3.put_object(Bucket="cameras", Key="incoming/cam1.mp4", Body=b"raw video")
code = error_code(lambda: s3.get_object(Bucket="cameras", Key="incoming/cam1.mp4"))
step("raw camera footage is never read out", code == ("AccessDenied", 403), code)
code = error_code(lambda: s3.copy_object(Bucket="bulk", Key="stolen.mp4",
                                         CopySource={"Bucket": "cameras", "Key": "incoming/cam1.mp4"}))
step("nor copied out", code == ("AccessDenied", 403), code)

# A service's own keys (its name and token) reach its buckets only.
token = oscar.get_service("upper").json()["token"]
svc = boto3.client("s3", endpoint_url=mp["endpoint"], aws_access_key_id="upper", aws_secret_access_key=token,
                   region_name=mp["region"])
svc.put_object(Bucket="s3in", Key="in/by-service.txt", Body=b"service keys\n")
code = error_code(lambda: svc.get_object(Bucket="bulk", Key="small.txt"))
step("a service's keys reach its own buckets only", code == ("AccessDenied", 403), code)
code = error_code(lambda: svc.copy_object(Bucket="s3in", Key="in/stolen.txt", CopySource={"Bucket": "bulk", "Key": "small.txt"}))
step("  nor copy from another into its own", code == ("AccessDenied", 403), code)
wait_jobs(3)

# --- 3. OSCAR's bucket API and mounts -------------------------------------------------------
def api_call(method, path, body=None, auth=admin):
    r = requests.request(method, f"{api}{path}", json=body, auth=auth, timeout=30)
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text


code, _ = api_call("POST", "/system/buckets", {"bucket_name": "shared", "visibility": "private"})
step("POST /system/buckets", code == 201, code)
step("  again: 400", api_call("POST", "/system/buckets", {"bucket_name": "shared"})[0] == 400)
step("  a bad name: 400", api_call("POST", "/system/buckets", {"bucket_name": "No_Such"})[0] == 400)
step("  a bad visibility: 400", api_call("POST", "/system/buckets", {"bucket_name": "abc", "visibility": "open"})[0] == 400)
step("  without credentials: 401", api_call("POST", "/system/buckets", {"bucket_name": "abc"}, auth=None)[0] == 401)
code, listed = api_call("GET", "/system/buckets")
by_name = {b["bucket_name"]: b for b in listed}
step("GET /system/buckets", code == 200 and by_name["shared"]["visibility"] == "private"
     and by_name["shared"]["owner"] == "oscar" and by_name["s3in"]["metadata"].get("service") == "true", listed)
code, one = api_call("GET", "/system/buckets/bulk")
step("GET /system/buckets/{b}: objects, usage", code == 200 and one["storage_usage"] == (100 << 20) + 3
     and {o["object_name"] for o in one["objects"]} == {"dir/big.bin", "small.txt"}, {k: one[k] for k in one if k != "objects"})
step("  an unknown bucket: 404", api_call("GET", "/system/buckets/nosuchbucket")[0] == 404)

# Visibility, as the services' own keys see it: private, then restricted to `upper`.
code = error_code(lambda: svc.put_object(Bucket="shared", Key="x.txt", Body=b"x"))
step("a private bucket is not a service's", code == ("AccessDenied", 403), code)
code, _ = api_call("PUT", "/system/buckets", {"bucket_name": "shared", "visibility": "restricted", "allowed_users": ["upper"]})
step("PUT /system/buckets (restricted to upper)", code == 204, code)
svc.put_object(Bucket="shared", Key="files/from-service.txt", Body=b"mounted\n")
step("  now the service's keys reach it", True)
step("  an unknown bucket: 404", api_call("PUT", "/system/buckets", {"bucket_name": "nosuchbucket", "visibility": "public"})[0] == 404)

# Presigned URLs from the API (OSCAR's shape), for the S3 endpoint.
code, p = api_call("POST", "/system/buckets/bulk/presign", {"object_key": "small.txt", "operation": "download"})
r = requests.get(p["url"], timeout=10) if code == 200 else None
step("POST /system/buckets/{b}/presign (download)", code == 200 and p["method"] == "GET" and r.content == b"abc", p)
code, p = api_call("POST", "/system/buckets/bulk/presign", {"object_key": "up/new.txt", "operation": "upload", "expires_in": 60})
r = requests.put(p["url"], data=b"via presign", timeout=10) if code == 200 else None
step("  (upload)", code == 200 and r.status_code == 200
     and s3.get_object(Bucket="bulk", Key="up/new.txt")["Body"].read() == b"via presign", p)
step("  an hour at most: 400", api_call("POST", "/system/buckets/bulk/presign",
                                        {"object_key": "a", "operation": "download", "expires_in": 7200})[0] == 400)
step("  upload or download only: 400", api_call("POST", "/system/buckets/bulk/presign",
                                                {"object_key": "a", "operation": "delete"})[0] == 400)
step("  an unknown bucket: 404", api_call("POST", "/system/buckets/nosuchbucket/presign",
                                          {"object_key": "a", "operation": "download"})[0] == 404)

# mount: the bucket folder is the script's (MOUNT_PATH); a public bucket is refused (500, as OSCAR).
api_call("POST", "/system/buckets", {"bucket_name": "open", "visibility": "public"})
lister = {"name": "lister", "image": "debian:bookworm-slim", "memory": "64Mi", "cpu": "0.2",
          "script": "#!/bin/sh\nls \"$MOUNT_PATH\" > \"$TMP_OUTPUT_DIR/listing.txt\"\n",
          "input": [{"storage_provider": "minio", "path": "lister/in"}],
          "output": [{"storage_provider": "minio", "path": "lister/out"}],
          "mount": {"storage_provider": "minio", "path": "open/files"}}
code, body = api_call("POST", "/system/services", lister)
step("a service mounting a public bucket is refused", code == 500 and "public" in json.dumps(body), (code, body))
lister["mount"]["path"] = "shared/files"
code, body = api_call("POST", "/system/services", lister)
step("a service mounting a private bucket", code == 201, (code, body))
with open(os.path.join(work, "go.txt"), "w") as f:
    f.write("go")
r = oscar.run_service("lister", input=os.path.join(work, "go.txt"), output=os.path.join(work, "listing.txt"), timeout=60)
got = open(os.path.join(work, "listing.txt")).read() if r.status_code == 200 else r.text
step("its script lists the mounted folder", got.split() == ["from-service.txt"], repr(got))

code, _ = api_call("DELETE", "/system/buckets/s3in")
step("DELETE of a bucket a service uses: 409", code == 409, code)
code, _ = api_call("DELETE", "/system/buckets/open")
step("DELETE /system/buckets/{b}", code == 204 and "open" not in [b["Name"] for b in s3.list_buckets()["Buckets"]], code)
step("  again: 404", api_call("DELETE", "/system/buckets/open")[0] == 404)

# --- 4. rclone (checks every file's MD5 against the ETags) ---------------------------------
tree = os.path.join(work, "tree")
os.makedirs(os.path.join(tree, "sub"), exist_ok=True)
for i in range(20):
    with open(os.path.join(tree, "sub" if i % 2 else "", f"f{i}.dat"), "wb") as f:
        f.write(os.urandom(1000 + 5000 * i))
env = dict(os.environ, RCLONE_CONFIG_FOGD_TYPE="s3", RCLONE_CONFIG_FOGD_PROVIDER="Minio",
           RCLONE_CONFIG_FOGD_ENDPOINT=mp["endpoint"], RCLONE_CONFIG_FOGD_ACCESS_KEY_ID=mp["access_key"],
           RCLONE_CONFIG_FOGD_SECRET_ACCESS_KEY=mp["secret_key"], RCLONE_CONFIG_FOGD_REGION=mp["region"],
           RCLONE_CONFIG="/dev/null")
# rclone's AWS SDK refuses a CA bundle for plain HTTP; some hosts set one for every tool.
env.pop("AWS_CA_BUNDLE", None)


def rclone(*args):
    r = subprocess.run(["rclone", *args], env=env, capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


rc, out = rclone("mkdir", "fogd:rcl")
step("rclone mkdir", rc == 0, out)
rc, out = rclone("copy", tree, "fogd:rcl/tree")
step("rclone copy", rc == 0, out)
rc, out = rclone("check", tree, "fogd:rcl/tree")
step("rclone check (sizes and MD5s)", rc == 0 and "0 differences found" in out, out.strip().splitlines()[-1:])
back = os.path.join(work, "tree-back")
rc, out = rclone("copy", "fogd:rcl/tree", back)
same = all(open(os.path.join(d, n), "rb").read() == open(os.path.join(back, os.path.relpath(d, tree), n), "rb").read()
           for d, _, files in os.walk(tree) for n in files)
step("rclone copies it back unchanged", rc == 0 and same, out)
rc, out = rclone("lsf", "-R", "fogd:rcl/tree")
step("rclone lists 20 files", rc == 0 and len([l for l in out.splitlines() if not l.endswith("/")]) == 20, out)
rc, out = rclone("purge", "fogd:rcl")
step("rclone purge", rc == 0 and "rcl" not in [b["Name"] for b in s3.list_buckets()["Buckets"]], out)

print("all steps passed")
