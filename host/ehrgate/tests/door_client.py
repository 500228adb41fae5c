"""Clients of the agent door that no code of the gateway wrote: Python's urllib for
the HTTP API, the official MCP Python SDK (`mcp`) over streamable HTTP and over
stdio. Each op prints one JSON object.

    door_client.py http-tools URL
    door_client.py http-call URL TOOL ARGS_JSON
    door_client.py http-post FULL_URL BODY
    door_client.py mcp-http URL TOOL ARGS_JSON
    door_client.py mcp-stdio EHRGATE_BIN URL TOOL ARGS_JSON
    door_client.py ehr-vitals FHIR_BASE PATIENT

The key comes from DOOR_KEY and the purpose from DOOR_PURPOSE (no header when
unset). `ehr-vitals` reads the sandbox EHR directly and works out the latest vital
sign per code on its own, to compare with what the door answers.
"""

import asyncio
import base64
import json
import os
import sys
import urllib.error
import urllib.request


def headers():
    h = {}
    if os.environ.get("DOOR_KEY"):
        h["Authorization"] = "Bearer " + os.environ["DOOR_KEY"]
    if os.environ.get("DOOR_PURPOSE"):
        h["X-Ehrgate-Purpose"] = os.environ["DOOR_PURPOSE"]
    return h


def http(url, body=None):
    h = headers()
    if body is not None:
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=body, headers=h, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return {"status": r.status, "body": json.loads(r.read()), "retry_after": r.headers.get("Retry-After")}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": json.loads(e.read() or b"null"), "retry_after": e.headers.get("Retry-After")}


def result(tools, res):
    texts = [c.text for c in res.content if getattr(c, "type", "") == "text"]
    return {"tools": tools, "is_error": bool(res.is_error), "structured": res.structured_content, "text": texts}


async def mcp_session(read, write, tool, args):
    from mcp import ClientSession

    async with ClientSession(read, write) as session:
        await session.initialize()
        listed = await session.list_tools()
        names = sorted(t.name for t in listed.tools)
        res = await session.call_tool(tool, args)
        return result(names, res)


async def mcp_http(url, tool, args):
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers=headers(), timeout=httpx2.Timeout(60.0, read=120.0)) as client:
        async with streamable_http_client(url.rstrip("/") + "/mcp", http_client=client) as (read, write):
            return await mcp_session(read, write, tool, args)


async def mcp_stdio(binary, url, tool, args):
    from mcp import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=binary,
        args=["door", "mcp", "--url", url, "--key", "env:DOOR_KEY", "--purpose", os.environ["DOOR_PURPOSE"]],
        env={"DOOR_KEY": os.environ["DOOR_KEY"]},
    )
    async with stdio_client(params) as (read, write):
        return await mcp_session(read, write, tool, args)


def ehr_vitals(base, patient):
    basic = base64.b64encode(b"ehrgate-demo:sandbox-demo-secret").decode()
    form = b"grant_type=client_credentials&scope=system%2F*.read"
    req = urllib.request.Request(base + "/token", data=form, headers={"Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req) as r:
        token = json.loads(r.read())["access_token"]
    req = urllib.request.Request(base + "/Observation?patient=" + patient + "&_count=1000", headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req) as r:
        bundle = json.loads(r.read())
    latest = {}
    for e in bundle.get("entry", []):
        o = e["resource"]
        cats = [c.get("code") for cat in o.get("category", []) for c in cat.get("coding", [])]
        if "vital-signs" not in cats:
            continue
        coding = o["code"]["coding"][0]
        key = coding.get("system", "") + "|" + coding["code"]
        if key not in latest or o["effectiveDateTime"] > latest[key]["effectiveDateTime"]:
            latest[key] = o
    return {"latest": sorted(o["id"] for o in latest.values())}


def main():
    op = sys.argv[1]
    if op == "http-tools":
        out = http(sys.argv[2].rstrip("/") + "/v1/tools")
    elif op == "http-call":
        out = http(sys.argv[2].rstrip("/") + "/v1/tools/" + sys.argv[3], sys.argv[4].encode())
    elif op == "http-post":
        out = http(sys.argv[2], sys.argv[3].encode())
    elif op == "mcp-http":
        out = asyncio.run(mcp_http(sys.argv[2], sys.argv[3], json.loads(sys.argv[4])))
    elif op == "mcp-stdio":
        out = asyncio.run(mcp_stdio(sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])))
    elif op == "ehr-vitals":
        out = ehr_vitals(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit("unknown op " + op)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
