"""An independent FHIR client (fhirpy, plus urllib for OAuth2) against the sandbox EHR.

Usage: fhirpy_client.py BASE_URL CLIENT_ID CLIENT_SECRET
Prints one `key value` line per check; exits non-zero on the first failure.
"""
import base64
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

from fhirpy import SyncFHIRClient

base, client_id, secret = sys.argv[1:4]

# SMART discovery and a client_credentials token with client_secret_basic.
with urllib.request.urlopen(base + "/.well-known/smart-configuration") as r:
    conf = json.load(r)
token_url = conf["token_endpoint"]
print("token_endpoint", token_url)
form = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": "system/*.read system/Task.c"}).encode()
basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
req = urllib.request.Request(token_url, data=form, headers={"Authorization": "Basic " + basic})
with urllib.request.urlopen(req) as r:
    tok = json.load(r)
assert tok["token_type"].lower() == "bearer", tok
print("token_expires_in", tok["expires_in"])
print("token_scope", tok["scope"].replace(" ", ","))

# A wrong secret is refused.
bad = urllib.request.Request(token_url, data=form, headers={"Authorization": "Basic " + base64.b64encode(f"{client_id}:nope".encode()).decode()})
try:
    urllib.request.urlopen(bad)
    print("wrong_secret accepted")
except urllib.error.HTTPError as e:
    print("wrong_secret", e.code)

client = SyncFHIRClient(base, authorization="Bearer " + tok["access_token"])

caps = client.execute("metadata", method="get")
print("metadata", caps["resourceType"], caps["fhirVersion"])

patient = client.reference("Patient", "patient-0000").to_resource()
print("read", patient["resourceType"], patient["id"], patient["gender"])

for rtype in ["Encounter", "Observation", "Condition", "MedicationRequest"]:
    found = client.resources(rtype).search(patient="patient-0000").fetch_all()
    assert all(r["subject"]["reference"] == "Patient/patient-0000" for r in found), rtype
    print("search", rtype, len(found))

# Paging: two per page, followed to the end.
everyone = client.resources("Patient").limit(2).fetch_all()
print("patients", len(everyone))

task = client.resource(
    "Task",
    status="requested",
    intent="order",
    description="discharge checklist",
    **{"for": {"reference": "Patient/patient-0000"}},
)
task.save()
print("created", task["resourceType"], bool(task["id"]))
again = client.reference("Task", task["id"]).to_resource()
print("read_back", again["status"], again["meta"]["versionId"])
tasks = client.resources("Task").search(patient="patient-0000").fetch_all()
print("tasks", len(tasks))

anonymous = SyncFHIRClient(base)
try:
    anonymous.reference("Patient", "patient-0000").to_resource()
    print("anonymous allowed")
except Exception as e:  # fhirpy raises its own error types; the class name is enough
    print("anonymous refused", type(e).__name__)
