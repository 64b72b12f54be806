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
    print(("ok   " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)
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
r = client.remove_service("shout")
step("remove_service", r.status_code == 204, str(r.status_code))
r = requests.get(f"{endpoint}/system/services/shout", auth=("oscar", password), timeout=10)
step("removed service is 404", r.status_code == 404 and "error" in r.json(), r.text)
print("oscar-python session: all steps passed")
