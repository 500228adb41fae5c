# The resource masker of ehrgate for Unity Catalog (a Python UDF body): the same
# operations as host/govern/src/mask.rs, so a masked read in Databricks equals
# `ehrgate sql --as` on the same row. `PROFILES` is filled in by `ehrgate catalog sql`.
# (No single quote in this file: a $$ body with one trips sqlglot, the parser the tests check the SQL with.)
# Arguments: resource (JSON text), profile (name), key (the pseudonym key), shift_days.
import datetime, hashlib, hmac, json

PROFILES = json.loads(__PROFILES__)
NOT_DATES = {"code", "system", "version", "id", "reference", "url", "unit"}
SMALL_ZIP3 = {"036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878", "879", "884", "890", "893"}


def mac(k, domain, value):
    return hmac.new(k.encode(), domain.encode() + b"\0" + value.encode(), hashlib.sha256).digest()


def pseudonym(k, v):
    return "ps_" + mac(k, "id", v)[:12].hex()


def pseudonym_ref(k, r):
    ty, sep, rest = r.partition("/")
    if sep and "A" <= ty[:1] <= "Z":
        return ty + "/" + pseudonym(k, rest.split("/")[0])
    return pseudonym(k, r)


def shift_days(k, patient, d):
    n = int.from_bytes(mac(k, "shift", patient)[:8], "big") % (2 * d + 1)
    return n - d


def zip3(z):
    digits = "".join(c for c in z if "0" <= c <= "9")[:3]
    return "000" if len(digits) < 3 or digits in SMALL_ZIP3 else digits


def looks_like_date(s):
    d = lambda a, b: len(s) >= b and s[a:b].isdigit() and s[a:b].isascii()
    return len(s) >= 7 and d(0, 4) and s[4] == "-" and d(5, 7) and (len(s) == 7 or (s[7] == "-" and d(8, 10) and (len(s) == 10 or s[10] == "T")))


def birth_year(s, this_year):
    y = int(s[:4]) if s[:4].isascii() and s[:4].isdigit() else 0
    return "<=%d" % (this_year - 90) if this_year - y > 89 else str(y)


def shift_date(s, days):
    if not looks_like_date(s) or len(s) < 10:
        return s
    try:
        d = datetime.date(int(s[0:4]), int(s[5:7]), int(s[8:10])) + datetime.timedelta(days=days)
    except (ValueError, OverflowError):
        return s
    return "%04d-%02d-%02d%s" % (d.year, d.month, d.day, s[10:])


def leaf(v, op, k, this_year, shift):
    if isinstance(v, list):
        return [leaf(i, op, k, this_year, shift) for i in v]
    if isinstance(v, dict) and op == "address":
        kept = {key: val for key, val in v.items() if key in ("state", "country", "postalCode", "use", "type")}
        if isinstance(kept.get("postalCode"), str):
            kept["postalCode"] = zip3(kept["postalCode"])
        return kept
    if isinstance(v, str):
        return {"pseudonym": lambda: pseudonym(k, v), "year": lambda: v[:4], "shift": lambda: shift_date(v, shift),
                "birth_year": lambda: birth_year(v, this_year), "zip3": lambda: zip3(v)}.get(op, lambda: v)()
    return v


def apply(m, steps, op, k, this_year, shift):
    first, rest = steps[0], steps[1:]
    if not rest:
        if op == "redact":
            m.pop(first, None)
        elif first in m:
            m[first] = leaf(m[first], op, k, this_year, shift)
        return
    child = m.get(first)
    if isinstance(child, dict):
        apply(child, rest, op, k, this_year, shift)
    elif isinstance(child, list):
        for it in child:
            if isinstance(it, dict):
                apply(it, rest, op, k, this_year, shift)


def identifier_values(v, k):
    if isinstance(v, list):
        for i in v:
            identifier_values(i, k)
    elif isinstance(v, dict) and isinstance(v.get("value"), str):
        v["value"] = pseudonym(k, v["value"])


def references(v, k):
    if isinstance(v, dict):
        r = v.get("reference")
        if isinstance(r, str) and not r.startswith("#") and not r.startswith("http"):
            v["reference"] = pseudonym_ref(k, r)
        if "code" not in v and "system" not in v and ("reference" in v or "identifier" in v or isinstance(v.get("type"), str)):
            v.pop("display", None)
        for key, child in v.items():
            if key == "identifier" or key.endswith("Identifier"):
                identifier_values(child, k)
            references(child, k)
    elif isinstance(v, list):
        for i in v:
            references(i, k)


def dates(v, op, shift, key=None):
    if isinstance(v, dict):
        for kk in list(v):
            v[kk] = dates(v[kk], op, shift, kk)
        return v
    if isinstance(v, list):
        return [dates(i, op, shift, key) for i in v]
    if isinstance(v, str) and (key is None or key not in NOT_DATES) and looks_like_date(v):
        return v[:4] if op == "year" else shift_date(v, shift)
    return v


def patient_of(v, ty):
    if ty == "Patient":
        return "Patient/" + v["id"] if isinstance(v.get("id"), str) else None
    for key in ("subject", "patient", "for", "beneficiary"):
        r = v.get(key, {}).get("reference") if isinstance(v.get(key), dict) else None
        if isinstance(r, str) and r.startswith("Patient/"):
            return r
    return None


def mask(resource, profile, k, shift_range, this_year):
    if resource is None:
        return None
    p = PROFILES.get(profile)
    if p is None:
        return None
    try:
        v = json.loads(resource)
    except ValueError:
        return None
    ty = v.get("resourceType", "") if isinstance(v, dict) else ""
    patient = patient_of(v, ty) if isinstance(v, dict) else None
    shift = shift_days(k, patient or "", max(shift_range, 1))
    contained = v.pop("contained", None) if isinstance(v, dict) else None
    for rule in p["rules"]:
        if rule["type"] in (None, ty) and isinstance(v, dict):
            apply(v, rule["steps"], rule["op"], k, this_year, shift)
    if p["ids"] == "pseudonym":
        if isinstance(v.get("id"), str):
            v["id"] = pseudonym(k, v["id"])
        references(v, k)
    if p["dates"] in ("year", "shift"):
        v = dates(v, p["dates"], shift)
    if contained is not None:
        if isinstance(contained, list):
            contained = [json.loads(mask(json.dumps(c), profile, k, shift_range, this_year)) if isinstance(c, dict) else c for c in contained]
        v["contained"] = contained
    return json.dumps(v, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
