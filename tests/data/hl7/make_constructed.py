"""Builds the constructed HL7v2 samples in this folder from the public samples in
../shared/data/hl7 (see SOURCES.md here): for message types no public sample with a
permissive license was found for, a public sample of a close type is re-labelled.
Run from this folder: python3 make_constructed.py /path/to/shared/data/hl7
The outputs are committed; tests read them, they never run this script."""
import os, sys

src = sys.argv[1]

def read(name):
    raw = open(os.path.join(src, name), 'rb').read()
    if raw.startswith(b'\xef\xbb\xbf'):
        raw = raw[3:]
    text = raw.decode('utf-8')
    return [s for s in text.replace('\r\n', '\r').replace('\n', '\r').split('\r') if s]

def relabel(segs, msg_type, trigger=None, drop=(), keep_pairs=None, sch25=None, txa17=None):
    out = []
    for s in segs:
        sid = s[:3]
        if sid in drop:
            continue
        f = s.split('|')
        if sid == 'MSH':
            f[8] = msg_type
            f[9] = f[9] + '-C'  # a control id of its own
        elif sid == 'EVN' and trigger:
            f[1] = trigger
        elif sid == 'SCH' and sch25 is not None:
            while len(f) <= 25:
                f.append('')
            f[25] = sch25
        elif sid == 'TXA' and txa17 is not None:
            while len(f) <= 17:
                f.append('')
            f[17] = txa17
        out.append('|'.join(f))
    if keep_pairs is not None:
        # keep the first `keep_pairs` PID/MRG pairs
        kept, pairs = [], 0
        for s in out:
            if s.startswith('PID'):
                pairs += 1
            if pairs <= keep_pairs or not (s.startswith('PID') or s.startswith('MRG') or s.startswith('PV1')):
                kept.append(s)
        out = kept
    return '\r'.join(out) + '\r'

made = {
    'adt_a05_from_ghh_v28_min.hl7': relabel(read('adt_a01_ghh_v28_min.hl7'), 'ADT^A05^ADT_A05', 'A05'),
    'adt_a05_from_redox_v23.hl7': relabel(read('adt_a04_redox_v23_bom.hl7'), 'ADT^A05', 'A05'),
    'adt_a06_from_ghh_v28_min.hl7': relabel(read('adt_a01_ghh_v28_min.hl7'), 'ADT^A06^ADT_A06', 'A06'),
    'adt_a06_from_accmgr_v23.hl7': relabel(read('adt_a01_accmgr_v23_bom.hl7'), 'ADT^A06', 'A06'),
    'adt_a07_from_ghh_v251.hl7': relabel(read('adt_a01_ghh_v251_bom.hl7'), 'ADT^A07^ADT_A06', 'A07'),
    'adt_a07_from_ghh_v28.hl7': relabel(read('adt_a04_ghh_v28.hl7'), 'ADT^A07^ADT_A06', 'A07'),
    'adt_a34_from_ntierprise_v28.hl7': relabel(read('adt_a40_merge_ntierprise_v28.hl7'), 'ADT^A34^ADT_A30', 'A34'),
    'adt_a34_from_two_pairs_v28.hl7': relabel(read('adt_a40_merge_two_pairs_v28.hl7'), 'ADT^A34^ADT_A30', 'A34', keep_pairs=1),
    'adt_a39_from_two_pairs_v28.hl7': relabel(read('adt_a40_merge_two_pairs_v28.hl7'), 'ADT^A39^ADT_A39', 'A39'),
    'adt_a39_from_ntierprise_v28.hl7': relabel(read('adt_a40_merge_ntierprise_v28.hl7'), 'ADT^A39^ADT_A39', 'A39'),
    'siu_s13_from_ghh_v28.hl7': relabel(read('siu_s12_ghh_v28.hl7'), 'SIU^S13^SIU_S12'),
    'siu_s13_from_multi_resource_v28.hl7': relabel(read('siu_s12_multi_resource_v28.hl7'), 'SIU^S13^SIU_S12'),
    'siu_s14_from_ghh_v28.hl7': relabel(read('siu_s12_ghh_v28.hl7'), 'SIU^S14^SIU_S12'),
    'siu_s14_from_multi_resource_v28.hl7': relabel(read('siu_s12_multi_resource_v28.hl7'), 'SIU^S14^SIU_S12'),
    'siu_s15_from_ghh_v28.hl7': relabel(read('siu_s12_ghh_v28.hl7'), 'SIU^S15^SIU_S12', sch25='Cancelled'),
    'siu_s15_from_multi_resource_v28.hl7': relabel(read('siu_s12_multi_resource_v28.hl7'), 'SIU^S15^SIU_S12'),
    'mdm_t04_from_prosolv_v28.hl7': relabel(read('mdm_t02_prosolv_v28.hl7'), 'MDM^T04^MDM_T02', 'T04', txa17='LA'),
    'mdm_t04_from_simhosp_v23.hl7': relabel(read('mdm_t02_simhosp_v23_long.hl7'), 'MDM^T04', 'T04'),
    'oml_o21_from_orm_lab_v23.hl7': relabel(read('orm_o01_lab_v23_bom.hl7'), 'OML^O21^OML_O21'),
    'dft_p03_from_orm_ghh_v26.hl7': relabel(read('orm_o01_ghh_v26_bom.hl7'), 'DFT^P03^DFT_P03', drop=('ORC', 'OBR')),
    'ras_o17_from_vxu_nist_v251.hl7': relabel(read('vxu_v04_nist_iz_v251_bom.hl7'), 'RAS^O17^RAS_O17'),
}
for name, text in made.items():
    open(name, 'w', newline='').write(text)
print(f'{len(made)} files')
