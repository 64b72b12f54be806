"""Drives fogd with the real OSCAR Python client (oscar-python from PyPI), as a user of an OSCAR
cluster would. Usage: client_session.py ENDPOINT PASSWORD FDL WORKDIR. Exits non-zero on any
mismatch; prints one line per step."""
import base64
import json
import sys
import time

import requests
from oscar_python.client import Client

endpoint, password, fdl, work = sys.argv[1:5]
client = Client({"cluster_id": "fogd", "endpoint": endpoint, "user": "oscar",
                 "password": password, "ssl": False})


def step(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (": " + str(detail) if detail else ""), flush=True)
    if not ok:
        sys.exit(1)


info = client.get_cluster_info().json()
step("get_cluster_info", info["serverless_backend"]["name"] == "fogd", json.dumps(info))
cfg = client.get_cluster_config().json()
step("get_cluster_config", cfg["minio_provider"]["endpoint"].startswith("http") and cfg["config"]["name"] == "oscar", json.dumps(cfg)[:160])

r = client.create_service(fdl)
step("create_service from an FDL file", r.status_code == 201, str(r.status_code))
names = [s["name"] for s in client.list_services().json()]
step("list_services", "shout" in names, str(names))
svc = client.get_service("shout").json()
step("get_service", len(svc["token"]) == 64 and "tr a-z A-Z" in svc["script"], svc["token"])

# update_service with a dict: a different memory and an extra variable.
new = dict(svc)
new.pop("token")
new["memory"] = "256Mi"
new["environment"] = {"variables": {"GREETING": "hi"}}
r = client.update_service("shout", new)
step("update_service", r.status_code == 204, str(r.status_code))
svc2 = client.get_service("shout").json()
step("update_service applied", svc2["memory"] == "256Mi" and svc2["token"] != svc["token"], svc2["memory"])

# Synchronous run with an input file; the single output file comes back (base64) and the
# client writes it to `output`.
with open(f"{work}/in.txt", "w") as f:
    f.write("hello from oscar-python\n")
r = client.run_service("shout", input=f"{work}/in.txt", output=f"{work}/out.txt", timeout=60)
out = open(f"{work}/out.txt").read()
step("run_service (sync)", r.status_code == 200 and out == "HI HELLO FROM OSCAR-PYTHON\n", repr(out))

# Asynchronous through /job, with the event a MinIO bucket notification sends for an object
# already in fogd's store (the harness put uploads/photo.txt there).
token = svc2["token"]
event = {"EventName": "s3:ObjectCreated:Put", "Key": "uploads/photo.txt",
         "Records": [{"eventVersion": "2.0", "eventSource": "minio:s3", "eventTime": "2026-01-01T00:00:00Z",
                      "eventName": "s3:ObjectCreated:Put",
                      "s3": {"bucket": {"name": "uploads"},
                             "object": {"key": "photo.txt", "size": 6, "eTag": "abc"}}}]}
r = requests.post(f"{endpoint}/job/shout", data=json.dumps(event),
                  headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"}, timeout=30)
step("POST /job with a MinIO event", r.status_code == 201, r.text)
job = r.json()["jobName"]
# And the client's own asynchronous call (a base64 body).
r = client.run_service("shout", input=f"{work}/in.txt", async_call=True)
step("run_service(async_call=True)", r.status_code == 201, r.text)

deadline = time.time() + 60
nulls = []
while True:
    jobs = client.list_jobs("shout").json()["jobs"]
    # OSCAR's JobInfo leaves unset times out (omitempty): never a null.
    nulls += [(k, f) for k, j in jobs.items() for f, v in j.items() if v is None]
    if len(jobs) >= 2 and all(j["status"] in ("Succeeded", "Failed") for j in jobs.values()):
        break
    if time.time() > deadline:
        step("jobs finish", False, json.dumps(jobs))
    time.sleep(0.2)
step("list_jobs", all(j["status"] == "Succeeded" for j in jobs.values()), json.dumps(jobs)[:200])
# OSCAR lists asynchronous jobs only: the two above, not the synchronous run before them.
step("list_jobs: asynchronous jobs only", len(jobs) == 2 and job in jobs, json.dumps(sorted(jobs)))
step("job times: unset ones left out, never null; a finished job has all three",
     not nulls and all({"creation_time", "start_time", "finish_time"} <= j.keys() for j in jobs.values()),
     json.dumps(nulls or jobs)[:300])
log = client.get_job_logs("shout", job).text
step("get_job_logs", "HI PHOTO" in log, repr(log))
r = client.remove_job("shout", job)
step("remove_job", r.status_code == 204 and job not in client.list_jobs("shout").json()["jobs"], str(r.status_code))
# --- OSCAR's read endpoints, with OSCAR's status codes and fields --------------------------
admin = ("oscar", password)


def get(path, **params):
    return requests.get(f"{endpoint}{path}", params=params or None, auth=admin, timeout=30)


svc3 = client.get_service("shout").json()
step("service JSON: labels.oscar_service, minio.default among its providers",
     svc3["labels"]["oscar_service"] == "shout" and "default" in svc3["storage_providers"]["minio"], json.dumps(svc3)[:200])
r = requests.post(f"{endpoint}/system/services", auth=("oscar", password), timeout=30,
                  json={"name": "bare", "image": "x", "script": "cat $INPUT_FILE_PATH",
                        "input": [{"storage_provider": "minio", "path": "bare/in"}]})
bare = client.get_service("bare").json()
step("OSCAR's defaults on a service given none", r.status_code == 201 and bare["memory"] == "256Mi"
     and bare["cpu"] == "0.2" and bare["log_level"] == "INFO", {k: bare.get(k) for k in ("memory", "cpu", "log_level")})
client.remove_service("bare")
cfg = get("/system/config").json()
step("/system/config in OSCAR's shape", set(cfg) >= {"config", "minio_provider"}
     and set(cfg["minio_provider"]) == {"endpoint", "verify", "access_key", "secret_key", "region"}, json.dumps(cfg)[:200])
r = get("/system/logs")
step("GET /system/logs: the node's log", r.status_code == 200 and "OSCAR API ready" in r.text, r.text[-200:])
r2 = get("/system/logs", timestamps="true")
step("  with timestamps", r2.text.splitlines()[0][:2] == "20" and r.text.splitlines()[0][:2] != "20", r2.text[:80])
step("  previous run: none yet, 404", get("/system/logs", previous="true").status_code == 404)
m = get("/system/metrics").json()
step("GET /system/metrics", m["totals"]["requests_count_sync"] >= 1 and m["totals"]["requests_count_async"] >= 1
     and {"start", "end", "sources"} <= m.keys(), json.dumps(m["totals"]))
step("  a bad time: 400", get("/system/metrics", start="yesterday").status_code == 400)
step("  end before start: 400", get("/system/metrics", start="2026-01-02T00:00:00Z", end="2026-01-01T00:00:00Z").status_code == 400)
ms = get("/system/metrics/shout").json()
by = {x["metric"]: x["value"] for x in ms["metrics"]}
step("GET /system/metrics/{svc}", ms["service_name"] == "shout" and by["requests-sync-per-service"] >= 1
     and by["requests-async-per-service"] >= 1 and by["cpu-hours"] > 0, json.dumps(by))
one = get("/system/metrics/shout", metric="requests-async-per-service").json()
step("  one metric", one["metric"] == "requests-async-per-service" and one["value"] == by["requests-async-per-service"], one)
step("  an unknown metric: 400", get("/system/metrics/shout", metric="bogus").status_code == 400)
step("  an unknown service: 404", get("/system/metrics/nosuch").status_code == 404)
d = get("/system/services/shout/deployment").json()
step("GET .../deployment", d["service_name"] == "shout" and d["state"] == "unavailable"
     and {"active_instances", "affected_instances", "resource_kind"} <= d.keys(), d)
dl = get("/system/services/shout/deployment/logs", timestamps="true").json()
step("GET .../deployment/logs: the last job's log", dl["available"] and dl["entries"] and "timestamp" in dl["entries"][0], dl)
step("  an unknown service: 404", get("/system/services/nosuch/deployment").status_code == 404)
f = get("/system/federation/shout").json()
step("GET /system/federation/{svc}", f == {"topology": "none", "members": None}, f)
member = {"type": "oscar", "cluster_id": "far", "service_name": "shout", "priority": 5}
clusters = {"far": {"endpoint": "http://127.0.0.1:9", "auth_user": "u", "auth_password": "p", "ssl_verify": False}}
r = requests.post(f"{endpoint}/system/federation/shout", json={"members": [member], "clusters": clusters}, auth=admin, timeout=30)
step("POST /system/federation/{svc} adds a member", r.status_code == 200 and r.json()["members"][0]["cluster_id"] == "far", r.text)
r = requests.put(f"{endpoint}/system/federation/shout", json={"members": [member], "update": [dict(member, priority=9)]},
                 auth=admin, timeout=30)
step("PUT replaces it", r.status_code == 200 and r.json()["members"][0]["priority"] == 9, r.text)
step("  and the service follows", get("/system/federation/shout").json()["members"][0]["priority"] == 9)
r = requests.delete(f"{endpoint}/system/federation/shout", json={"members": [member]}, auth=admin, timeout=30)
step("DELETE removes it", r.status_code == 200 and r.json()["members"] == [], r.text)
step("  an unknown service: 404", requests.get(f"{endpoint}/system/federation/nosuch", auth=admin, timeout=10).status_code == 404)
step("  a bad body: 400", requests.post(f"{endpoint}/system/federation/shout", data="{", auth=admin, timeout=10).status_code == 400)
step("  no credentials: 401", requests.get(f"{endpoint}/system/federation/shout", timeout=10).status_code == 401)

r = client.remove_service("shout")
step("remove_service", r.status_code == 204, str(r.status_code))
r = requests.get(f"{endpoint}/system/services/shout", auth=("oscar", password), timeout=10)
step("removed service is 404", r.status_code == 404 and "error" in r.json(), r.text)
print("oscar-python session: all steps passed")
