"""The training options of a job (batch_size, class_word, steps by default scaled by photos) over the API."""

import json
import time

from generation.training_data import auto_steps
from tests.service.test_app import CONSENT, _upload, auth, client, keys, settings, wait_for  # noqa: F401 (fixtures)


def test_train_job_takes_batch_size_and_class_word(client, keys, settings):  # noqa: F811 (fixtures)
    studio = auth(keys["studio"])
    subject_id = client.post("/v1/subjects", json={"display_name": "T", "consent": CONSENT}, headers=studio).json()[
        "id"
    ]
    for name in ("img1.jpg", "img2.jpg"):
        assert _upload(client, keys["studio"], subject_id, name).json()["accepted"]
    jobs = f"/v1/subjects/{subject_id}/jobs"
    for wrong, field in (({"class_word": "dog"}, "class_word"), ({"batch_size": 0}, "batch_size")):
        refused = client.post(jobs, json={"kind": "train", "parameters": wrong}, headers=studio)
        assert refused.status_code == 422 and field in json.dumps(refused.json()["detail"])

    parameters = {"steps": 2, "batch_size": 3, "class_word": "woman", "rank": 4, "resolution": 64}
    job = client.post(jobs, json={"kind": "train", "parameters": parameters}, headers=studio).json()
    assert job["parameters"]["batch_size"] == 3 and job["parameters"]["class_word"] == "woman"
    finished = wait_for(client, keys["studio"], job["id"])
    assert finished["status"] == "succeeded", finished["error"]
    assert finished["total_steps"] == 2 and finished["loss"] is not None
    record = json.loads(next(settings.resolved_storage_dir.glob(f"jobs/{job['id']}/lora-*/training.json")).read_text())
    assert record["config"]["class_word"] == "woman" and record["config"]["batch_size"] == 3
    assert record["chosen_checkpoint"]["step"] == 2 and [c["step"] for c in record["checkpoints"]] == [2]

    default = client.post(jobs, json={"kind": "train", "parameters": {"resolution": 64}}, headers=studio).json()
    assert default["parameters"]["steps"] is None and default["total_steps"] == 0  # set once photos are counted
    deadline = time.monotonic() + 120
    while client.get(f"/v1/jobs/{default['id']}", headers=studio).json()["step"] in (None, 0):
        assert time.monotonic() < deadline, "the default train job did not start"
        time.sleep(0.2)
    client.post(f"/v1/jobs/{default['id']}/cancel", headers=studio)
    cancelled = wait_for(client, keys["studio"], default["id"])
    assert cancelled["status"] == "cancelled" and cancelled["total_steps"] == auto_steps(2, 2)
