#!/usr/bin/env python3
"""Writes the synthetic vendor fixtures under adapters/<vendor>/tests/fixtures/.

One clinical scenario (an inpatient admit of one synthetic patient, a potassium lab
result, an update and a discharge) rendered in each vendor's conventions. No real
person: names, numbers and OIDs are made up (OIDs under the HL7 example root
2.16.840.1.113883.19). Re-run after changing the scenario; goldens then need
EHRGATE_UPDATE_GOLDEN=1 and a review of the diff.
"""
import json, os, sys
from xml.sax.saxutils import escape as xml_escape

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
MRN_SYS = "urn:oid:2.16.840.1.113883.19.5.1"
VISIT_SYS = "urn:oid:2.16.840.1.113883.19.5.2"
LAB_SYS = "urn:oid:2.16.840.1.113883.19.5.3"

T_MSG = "20240305081500-0500"
T_ADMIT = "20240305081000-0500"
T_COLLECT = "20240305090000-0500"
T_RESULT = "20240305100000-0500"
T_DISCH = "20240308113000-0500"
NAME = "TESTPATIENT^ALPHA^Q"
DOB = "19800101"
ADDR = "100 EXAMPLE ST^^SPRINGFIELD^IL^62701^USA"
PHONE = "(555)555-0100"
LOC = "4WEST^401^A^EHRGATE_TEST"
DOC = "1234567^DOCTOR^TEST^^^^MD"
OBX_K = "OBX|1|NM|{code}||4.1|mmol/L^mmol/L^UCUM|3.5-5.1|N|||F|||" + T_COLLECT
LOINC_K = "2823-3^Potassium [Moles/volume] in Serum or Plasma^LN"


def msg(*segs):
    return "\r".join(segs) + "\r"


def write(vendor, name, text):
    d = os.path.join(ROOT, vendor, "tests", "fixtures")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "w", newline="") as f:
        f.write(text)


def config(vendor, cfg):
    write(vendor, "config.json", json.dumps(cfg, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------- Epic
def epic(trigger, evn_time=T_MSG, pv1_extra=None, z=True, control="EPIC0001", pclass="I"):
    msh = f"MSH|^~\\&|EPIC|EHRGATE_TEST_HOSP|EHRGATE|EHRGATE|{T_MSG}||ADT^{trigger}^ADT_A01|{control}|P|2.5.1"
    pid = f"PID|1||E1000001^^^EPI^EPI~100200300^^^MRN^MRN~9000111^^^EHRGATE_TEST_MRN^MRN||{NAME}||{DOB}|F|||{ADDR}||{PHONE}^PRN^PH|||||6000001^^^HAR^AN"
    pv1 = ["PV1", "1", pclass, LOC, "", "", "", DOC] + [""] * 11 + ["5000001^^^CSN^VN"] + [""] * 24 + [T_ADMIT]
    if pv1_extra:
        for k, v in pv1_extra.items():
            while len(pv1) <= k:
                pv1.append("")
            pv1[k] = v
    segs = [msh, f"EVN|{trigger}|{evn_time}", pid]
    if z:
        segs.append("ZPD|1|Y|SYNTHETIC-PREFERRED-PHARMACY")
    segs.append("|".join(pv1))
    if z:
        segs.append("ZPV|1|OBSERVATION-TO-INPATIENT|N")
    return msg(*segs)


def epic_oru():
    return msg(
        f"MSH|^~\\&|EPIC|EHRGATE_TEST_HOSP|EHRGATE|EHRGATE|{T_RESULT}||ORU^R01^ORU_R01|EPIC0005|P|2.5.1",
        f"PID|1||E1000001^^^EPI^EPI~100200300^^^MRN^MRN||{NAME}||{DOB}|F|||{ADDR}||{PHONE}^PRN^PH",
        f"PV1|1|I|{LOC}||||{DOC}||||||||||||5000001^^^CSN^VN",
        f"ORC|RE|8000001^EPC|7000001^EPIC_LAB",
        f"OBR|1|8000001^EPC|7000001^EPIC_LAB|{LOINC_K}|||{T_COLLECT}|||||||||{DOC}||||||{T_RESULT}|||F",
        OBX_K.format(code=LOINC_K),
    )


write("epic", "epic_adt_a01_admit.hl7", epic("A01"))
write("epic", "epic_adt_a04_register_outpatient.hl7", epic("A04", control="EPIC0002", pclass="O", z=False))
write("epic", "epic_adt_a08_update.hl7", epic("A08", control="EPIC0003"))
write("epic", "epic_adt_a03_discharge.hl7", epic("A03", control="EPIC0004", pv1_extra={36: "01", 45: T_DISCH}))
write("epic", "epic_oru_r01_potassium.hl7", epic_oru())
write("epic", "epic_adt_a01_unknown_mrn_authority.hl7",
      epic("A01", control="EPIC0006").replace("~100200300^^^MRN^MRN", ""))
write("epic", "epic_siu_s12_unsupported.hl7",
      msg(f"MSH|^~\\&|EPIC|EHRGATE_TEST_HOSP|EHRGATE|EHRGATE|{T_MSG}||SIU^S12|EPIC0007|P|2.5.1", "SCH|1"))
# Epic FHIR (Bulk NDJSON / REST): Epic extensions, contained Medication, Epic OIDs.
EPIC_ROOT = "urn:oid:1.2.840.114350.1.13.99999.1.7.5.737384"  # Epic root + made-up deployment arcs
patient = {"resourceType": "Patient", "id": "eSYNTH.Patient.1",
           "extension": [
               {"url": "http://open.epic.com/FHIR/StructureDefinition/extension/legal-sex",
                "valueCodeableConcept": {"coding": [{"system": "urn:oid:1.2.840.114350.1.13.99999.1.7.10.698084.130.657370.19999000", "code": "female"}]}},
               {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"}],
           "identifier": [
               {"use": "usual", "type": {"text": "EPI"}, "system": EPIC_ROOT + ".0", "value": "E1000001"},
               {"use": "usual", "type": {"text": "MRN"}, "system": EPIC_ROOT + ".14", "value": "100200300"}],
           "name": [{"use": "official", "family": "TESTPATIENT", "given": ["ALPHA", "Q"]}],
           "gender": "female", "birthDate": "1980-01-01"}
medreq = {"resourceType": "MedicationRequest", "id": "eSYNTH.MedReq.1", "status": "active", "intent": "order",
          "contained": [{"resourceType": "Medication", "id": "med1",
                         "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197361", "display": "amlodipine 5 MG Oral Tablet"}]}}],
          "medicationReference": {"reference": "#med1", "display": "amlodipine 5 MG Oral Tablet"},
          "subject": {"reference": "Patient/eSYNTH.Patient.1"},
          "extension": [{"url": "http://open.epic.com/FHIR/StructureDefinition/extension/ip-admin-frequency", "valueString": "daily"}]}
write("epic", "epic_fhir_patient_medicationrequest.ndjson", json.dumps(patient) + "\n" + json.dumps(medreq) + "\n")
config("epic", {
    "mrn.authority": "MRN", "mrn.type": "MRN", "mrn.system": MRN_SYS,
    "visit.authority": "CSN", "visit.system": VISIT_SYS,
    "identifier-systems": json.dumps({"EPI": EPIC_ROOT + ".0", "HAR": EPIC_ROOT + ".3", "EPIC_LAB": LAB_SYS,
                                      "EHRGATE_TEST_MRN": "urn:oid:2.16.840.1.113883.19.5.9"}),
    "fhir.system-map": json.dumps({EPIC_ROOT + ".14": MRN_SYS}),
})

# ---------------------------------------------------------------- Oracle Health (Cerner Millennium)
def cerner_pid():
    return (f"PID|1|100200300^^^SITE_MRN^MR|100200300^^^SITE_MRN^MR~2000001^^^SITE_CMRN^CMRN|\"\"|{NAME}^^^^CURRENT||{DOB}|F|\"\"|\"\"|"
            f"{ADDR}^HOME||{PHONE}^HOME||\"\"|\"\"|\"\"|5000001^^^SITE_FIN^FIN NB")


def cerner_adt(trigger, control, extra=None):
    pv1 = ["PV1", "1", "I", LOC, "", "", "", DOC] + [""] * 36 + [T_ADMIT]
    for k, v in (extra or {}).items():
        while len(pv1) <= k:
            pv1.append("")
        pv1[k] = v
    return msg(f"MSH|^~\\&|HNAM_PM|EHRGATE_TEST_HOSP|EHRGATE|EHRGATE|{T_MSG}||ADT^{trigger}|{control}|P|2.3",
               f"EVN|{trigger}|{T_MSG}", cerner_pid(), "|".join(pv1))


def cerner_oru():
    cv = "2823^Potassium Lvl^99MCV"
    return msg(f"MSH|^~\\&|HNAM_RADNET|EHRGATE_TEST_HOSP|EHRGATE|EHRGATE|{T_RESULT}||ORU^R01|Q000000005T1|P|2.3",
               cerner_pid(), f"PV1|1|I|{LOC}||||{DOC}",
               f"ORC|RE|8000001^HNAM_ORDERID|7000001^HNAM_ACCN",
               f"OBR|1|8000001^HNAM_ORDERID|7000001^HNAM_ACCN|{LOINC_K}|||{T_COLLECT}|||||||||{DOC}||||||{T_RESULT}|||F",
               OBX_K.format(code=cv))


write("oracle-health", "oracle_adt_a01_admit.hl7", cerner_adt("A01", "Q000000001T1"))
write("oracle-health", "oracle_adt_a08_update.hl7", cerner_adt("A08", "Q000000002T1"))
write("oracle-health", "oracle_adt_a03_discharge.hl7", cerner_adt("A03", "Q000000003T1", {36: "01", 45: T_DISCH}))
write("oracle-health", "oracle_oru_r01_potassium_code_value.hl7", cerner_oru())
config("oracle-health", {
    "mrn.authority": "SITE_MRN", "mrn.system": MRN_SYS,
    "fin.authority": "SITE_FIN", "fin.system": VISIT_SYS,
    "identifier-systems": json.dumps({"HNAM_ACCN": LAB_SYS, "SITE_CMRN": "urn:oid:2.16.840.1.113883.19.5.8"}),
    "concept-map": json.dumps([{"system": "99MCV", "code": "2823",
                                "target": {"system": "http://loinc.org", "code": "2823-3", "display": "Potassium [Moles/volume] in Serum or Plasma"}}]),
})

# ---------------------------------------------------------------- MEDITECH Expanse
def mt_pid():
    return f"PID|1|E000777^^^MPI^PI|100200300^^^UNIT^MR||{NAME}||{DOB}|F|||{ADDR}||{PHONE}|||||5000001^^^ACCT^AN"


def mt_adt(trigger, control, extra=None):
    pv1 = ["PV1", "1", "I", LOC, "", "", "", DOC] + [""] * 36 + [T_ADMIT]
    for k, v in (extra or {}).items():
        while len(pv1) <= k:
            pv1.append("")
        pv1[k] = v
    return msg(f"MSH|^~\\&|MEDITECH|EHRGATE_TEST_HOSP|EHRGATE|EHRGATE|{T_MSG}||ADT^{trigger}|{control}|P|2.4",
               f"EVN|{trigger}|{T_MSG}", mt_pid(), "|".join(pv1))


write("meditech", "meditech_adt_a01_admit.hl7", mt_adt("A01", "MT0001"))
write("meditech", "meditech_adt_a08_update.hl7", mt_adt("A08", "MT0002"))
write("meditech", "meditech_adt_a03_discharge.hl7", mt_adt("A03", "MT0003", {36: "01", 45: T_DISCH}))
write("meditech", "meditech_oru_r01_potassium.hl7", msg(
    f"MSH|^~\\&|MEDITECH|EHRGATE_TEST_HOSP|EHRGATE|EHRGATE|{T_RESULT}||ORU^R01|MT0004|P|2.4",
    mt_pid(), f"PV1|1|I|{LOC}||||{DOC}",
    f"ORC|RE|8000001^MT_OE|7000001^MT_LAB",
    f"OBR|1|8000001^MT_OE|7000001^MT_LAB|{LOINC_K}|||{T_COLLECT}|||||||||{DOC}||||||{T_RESULT}|||F",
    OBX_K.format(code=LOINC_K)))
mt_obs = {"resourceType": "Observation", "id": "mt-obs-1", "status": "final",
          "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
          "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
          "subject": {"reference": "Patient/mt-pat-1"}, "valueQuantity": {"value": 4.1, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}}
mt_vital = {"resourceType": "Observation", "id": "mt-obs-2", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": "Patient/mt-pat-1"}, "effectiveDateTime": "2024-03-05T09:00:00-05:00",
            "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}}
mt_pat = {"resourceType": "Patient", "id": "mt-pat-1", "meta": {"profile": ["http://example.org/other-profile"]},
          "identifier": [{"system": MRN_SYS, "value": "100200300"}], "gender": "female", "birthDate": "1980-01-01",
          "name": [{"family": "TESTPATIENT", "given": ["ALPHA"]}]}
mt_enc = {"resourceType": "Encounter", "id": "mt-enc-1", "status": "in-progress",
          "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
          "type": [{"text": "Inpatient"}], "subject": {"reference": "Patient/mt-pat-1"}}
write("meditech", "meditech_fhir_uscore.ndjson", "".join(json.dumps(r) + "\n" for r in [mt_pat, mt_enc, mt_obs, mt_vital]))
config("meditech", {
    "mrn.authority": "UNIT", "mrn.system": MRN_SYS,
    "visit.authority": "ACCT", "visit.system": VISIT_SYS,
    "identifier-systems": json.dumps({"MT_LAB": LAB_SYS, "MPI": "urn:oid:2.16.840.1.113883.19.5.7"}),
})

# ---------------------------------------------------------------- generic feed forwarded by engines
def generic_adt(app, trigger, control, extra=None):
    pv1 = ["PV1", "1", "I", LOC, "", "", "", DOC] + [""] * 11 + ["5000001^^^HOSP_VISIT^VN"] + [""] * 24 + [T_ADMIT]
    for k, v in (extra or {}).items():
        while len(pv1) <= k:
            pv1.append("")
        pv1[k] = v
    return msg(f"MSH|^~\\&|{app}|EHRGATE_TEST_HOSP|EHRGATE|EHRGATE|{T_MSG}||ADT^{trigger}^ADT_A01|{control}|P|2.5.1",
               f"EVN|{trigger}|{T_MSG}",
               f"PID|1||100200300^^^HOSP_MRN^MR||{NAME}||{DOB}|F|||{ADDR}||{PHONE}",
               "|".join(pv1))


def generic_oru(app, control):
    return msg(f"MSH|^~\\&|{app}|EHRGATE_TEST_HOSP|EHRGATE|EHRGATE|{T_RESULT}||ORU^R01^ORU_R01|{control}|P|2.5.1",
               f"PID|1||100200300^^^HOSP_MRN^MR||{NAME}||{DOB}|F|||{ADDR}||{PHONE}",
               f"PV1|1|I|{LOC}||||{DOC}||||||||||||5000001^^^HOSP_VISIT^VN",
               f"ORC|RE|8000001^HOSP_OE|7000001^HOSP_LAB",
               f"OBR|1|8000001^HOSP_OE|7000001^HOSP_LAB|{LOINC_K}|||{T_COLLECT}|||||||||{DOC}||||||{T_RESULT}|||F",
               OBX_K.format(code=LOINC_K))


ENGINE_CFG = {"identifier-systems": json.dumps({"HOSP_MRN": MRN_SYS, "HOSP_VISIT": VISIT_SYS, "HOSP_LAB": LAB_SYS})}


def mirth_xml(er7):
    """Mirth Connect's non-strict HL7 v2 XML: <HL7Message><SEG><SEG.n><SEG.n.m>..."""
    out = ["<HL7Message>"]
    for seg in [s for s in er7.split("\r") if s]:
        fields = seg.split("|")
        sid = fields[0]
        out.append(f"<{sid}>")
        if sid == "MSH":
            out.append("<MSH.1>|</MSH.1>")
            out.append(f"<MSH.2>{xml_escape(fields[1])}</MSH.2>")
            rest = [(i + 1, f) for i, f in enumerate(fields[2:], start=2)]
        else:
            rest = [(i, f) for i, f in enumerate(fields[1:], start=1)]
        for n, f in rest:
            for rep in f.split("~"):
                out.append(f"<{sid}.{n}>")
                for c, comp in enumerate(rep.split("^"), start=1):
                    subs = comp.split("&")
                    if len(subs) == 1:
                        out.append(f"<{sid}.{n}.{c}>{xml_escape(comp)}</{sid}.{n}.{c}>")
                    else:
                        out.append(f"<{sid}.{n}.{c}>" + "".join(
                            f"<{sid}.{n}.{c}.{s}>{xml_escape(x)}</{sid}.{n}.{c}.{s}>" for s, x in enumerate(subs, start=1)) + f"</{sid}.{n}.{c}>")
                out.append(f"</{sid}.{n}>")
        out.append(f"</{sid}>")
    out.append("</HL7Message>")
    return "\n".join(out) + "\n"


write("mirth", "mirth_adt_a01_admit.hl7", generic_adt("EHR_UPSTREAM", "A01", "MC0001"))
write("mirth", "mirth_adt_a01_admit_xml.xml", mirth_xml(generic_adt("EHR_UPSTREAM", "A01", "MC0001")))
write("mirth", "mirth_adt_a03_discharge_xml.xml", mirth_xml(generic_adt("EHR_UPSTREAM", "A03", "MC0002", {36: "01", 45: T_DISCH})))
write("mirth", "mirth_adt_a08_update.hl7", generic_adt("EHR_UPSTREAM", "A08", "MC0003"))
write("mirth", "mirth_oru_r01_potassium_xml.xml", mirth_xml(generic_oru("LAB_UPSTREAM", "MC0004")))
write("mirth", "mirth_http_event_headers.txt",
      "X-Mirth-Channel-Id: 3f1c2a8e-0000-4000-8000-000000000001\r\nX-Mirth-Channel-Name: ADT to ehrgate\r\n"
      "X-Mirth-Message-Id: 42\r\nX-Mirth-Server-Id: 9b0e1d2c-0000-4000-8000-000000000002\r\n\r\n"
      + generic_adt("EHR_UPSTREAM", "A01", "MC0001"))
write("mirth", "mirth_http_event_json_xml.txt",
      json.dumps({"headers": {"X-Mirth-Channel-Id": "3f1c2a8e-0000-4000-8000-000000000001", "X-Mirth-Message-Id": "43"},
                  "body": mirth_xml(generic_oru("LAB_UPSTREAM", "MC0004"))}) + "\n")
config("mirth", ENGINE_CFG)

write("rhapsody", "rhapsody_batch_bhs_admit_and_result.hl7",
      msg("FHS|^~\\&|RHAPSODY|EHRGATE_TEST_HOSP|||20240305120000-0500", "BHS|^~\\&|RHAPSODY|EHRGATE_TEST_HOSP|||20240305120000-0500") +
      generic_adt("EHR_UPSTREAM", "A01", "RH0001") + generic_oru("LAB_UPSTREAM", "RH0002") + msg("BTS|2", "FTS|1"))
write("rhapsody", "rhapsody_adt_a08_update.hl7", generic_adt("EHR_UPSTREAM", "A08", "RH0003"))
write("rhapsody", "rhapsody_adt_a03_discharge.hl7", generic_adt("EHR_UPSTREAM", "A03", "RH0004", {36: "01", 45: T_DISCH}))
write("rhapsody", "rhapsody_file_separator.txt",
      (generic_adt("EHR_UPSTREAM", "A01", "RH0001") + "\n\n" + generic_oru("LAB_UPSTREAM", "RH0002")).replace("\r", "\n"))
write("rhapsody", "rhapsody_http_event_properties.txt",
      "X-Rhapsody-MessageId: 100245\r\nX-Rhapsody-InputCommPoint: ADT In\r\nX-Rhapsody-Route: ADT to Lake\r\n"
      "X-Rhapsody-ReceivedTime: 2024-03-05T08:15:02-05:00\r\n\r\n" + generic_adt("EHR_UPSTREAM", "A01", "RH0001"))
config("rhapsody", ENGINE_CFG)


def len10(m):
    return f"{len(m.encode()):010d}" + m


write("cloverleaf", "cloverleaf_len10_admit_and_result.dat",
      len10(generic_adt("EHR_UPSTREAM", "A01", "CL0001")) + len10(generic_oru("LAB_UPSTREAM", "CL0002")))
write("cloverleaf", "cloverleaf_nl_admit_update_discharge.dat",
      generic_adt("EHR_UPSTREAM", "A01", "CL0001") + "\n" + generic_adt("EHR_UPSTREAM", "A08", "CL0003") + "\n" +
      generic_adt("EHR_UPSTREAM", "A03", "CL0004", {36: "01", 45: T_DISCH}) + "\n")
write("cloverleaf", "cloverleaf_len10_truncated.dat", len10(generic_adt("EHR_UPSTREAM", "A01", "CL0001"))[:-40])
write("cloverleaf", "cloverleaf_adt_a01_admit.hl7", generic_adt("EHR_UPSTREAM", "A01", "CL0001"))
write("cloverleaf", "cloverleaf_oru_r01_potassium.hl7", generic_oru("LAB_UPSTREAM", "CL0002"))
config("cloverleaf", ENGINE_CFG)
print("fixtures written")
