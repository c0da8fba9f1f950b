from provenance import verify_path

STATES = {None: "none", "Valid": "valid-untrusted", "Trusted": "trusted", "Invalid": "invalid"}
SIGNER_ONLY = {"signingCredential.expired"}  # expired is not tampered: the claim stands, unconfirmed


def test_all_conformance_files_match_expected(conformance, store):
    directory, expected = conformance
    assert len(expected) == 26
    trust = store.trust_anchors()  # a local anchor changes none of the results
    for case in expected:
        verdict = verify_path(directory / case["file"], trust)
        state = STATES[case["validation_state"]]
        if state == "invalid" and case["failure_codes"] and set(case["failure_codes"]) <= SIGNER_ONLY:
            state = "valid-untrusted"
        assert verdict.c2pa.state == state, case["file"]
        assert verdict.c2pa.failure_codes == case["failure_codes"], case["file"]
        expected_label = {
            "none": "no_provenance",
            "valid-untrusted": "credentials_no_ai_claim",
            "invalid": "invalid_credentials",
        }[verdict.c2pa.state]
        assert verdict.label == expected_label, case["file"]
        assert verdict.c2pa.unchanged_since_signing is {"none": None, "invalid": False}.get(state, True), case["file"]
        if case["manifest"]:
            assert verdict.c2pa.signer is not None, case["file"]
