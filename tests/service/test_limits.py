import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from service.app import create_app
from service.database import engine_for
from service.deps import create_key
from service.limits import RateLimiter
from service.settings import Settings
from service.tables import Job
from tests.conftest import FACES


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket():
    clock = FakeClock()
    limiter = RateLimiter(per_minute=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a")
    assert wait == pytest.approx(20.0)  # one token every 20 s
    assert limiter.retry_after(wait) == "20"
    assert limiter.take("b") == 0.0  # buckets are separate
    clock.now = 20.0
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


@pytest.fixture
def settings(tmp_path, tiny_model):
    return Settings(
        data_dir=tmp_path / "data",
        rate_limit_per_minute=3,
        public_rate_limit_per_minute=2,
        max_active_jobs=1,
        sdxl_model=tiny_model,
    )


def test_rate_limits(settings):
    with Session(engine_for(settings.resolved_database_url)) as session:
        first, second = create_key(session, "a", "verifier"), create_key(session, "b", "verifier")
    photo = {"file": ("p.jpg", (FACES / "img3.jpg").read_bytes(), "image/jpeg")}
    with TestClient(create_app(settings)) as client:
        codes = [
            client.post("/v1/verify", files=photo, headers={"Authorization": f"Bearer {first}"}).status_code
            for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        limited = client.post("/v1/verify", files=photo, headers={"Authorization": f"Bearer {first}"})
        assert "rate limit of 3 requests per minute" in limited.json()["detail"] and limited.headers["Retry-After"]
        assert client.post("/v1/verify", files=photo, headers={"Authorization": f"Bearer {second}"}).status_code == 200

        pages = [client.post("/verify", files=photo).status_code for _ in range(3)]
        assert pages == [200, 200, 429]
        assert "Too many checks" in client.post("/verify", files=photo).text


def test_job_queue_depth(settings):
    with Session(engine_for(settings.resolved_database_url)) as session:
        studio = {"Authorization": f"Bearer {create_key(session, 's', 'studio', 'acme')}"}
    consent = {"given_by": "A", "scope": ["training", "generation"], "text_version": "v1"}
    with TestClient(create_app(settings)) as client:
        subject = client.post("/v1/subjects", json={"display_name": "A", "consent": consent}, headers=studio).json()
        upload = client.post(
            f"/v1/subjects/{subject['id']}/photos",
            headers=studio,
            files={"file": ("a.jpg", (FACES / "img1.jpg").read_bytes(), "image/jpeg")},
        )
        assert upload.json()["accepted"]
        with Session(engine_for(settings.resolved_database_url)) as session:  # a job already running
            session.add(
                Job(
                    tenant="acme",
                    subject_id=subject["id"],
                    kind="train",
                    status="running",
                    created_by="s",
                    parameters="{}",
                )
            )
            session.commit()
        response = client.post(f"/v1/subjects/{subject['id']}/jobs", json={"kind": "train"}, headers=studio)
        assert response.status_code == 429
        assert "limit 1" in response.json()["detail"] and response.headers["Retry-After"] == "60"
