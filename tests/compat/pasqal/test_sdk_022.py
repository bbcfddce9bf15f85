"""pasqal-cloud 0.22 (issue 10): the closed-batch example with the older SDK, which polls the whole batch
(`GET /api/v2/batches/{id}`) at a fixed interval and has no `/status` routes. Runs in its own venv (.venv-022,
requirements-022.txt) against the same `qcloud serve` as the 0.24 suite (conftest.py)."""
import pathlib

import pasqal_cloud
import requests
from pasqal_cloud import SDK
from pasqal_cloud.authentication import TokenProvider
from pasqal_cloud.endpoints import Endpoints

SEQ = (pathlib.Path(__file__).parent / "param_blackman_ramp.json").read_text()


class Static(TokenProvider):
    def __init__(self, t):
        self.t = t

    def get_token(self):
        return self.t


def test_the_sdk_is_0_22():
    assert pasqal_cloud.__version__.startswith("0.22."), pasqal_cloud.__version__


def test_closed_batch_two_jobs_with_the_0_22_sdk(server, alice):
    u = server["url"]
    sdk = SDK(project_id=alice["project_id"], token_provider=Static(alice["token"]),
              endpoints=Endpoints(core=f"{u}/pasqal/core-fast", account=f"{u}/pasqal/account"))
    b = sdk.create_batch(SEQ, [{"runs": 200, "variables": {"omega_max": 2.0}},
                               {"runs": 50, "variables": {"omega_max": 1.5}}], device_type="EMU_FREE", wait=True)
    assert b.status == "DONE"
    jobs = b.ordered_jobs
    assert [j.runs for j in jobs] == [200, 50]
    for j in jobs:
        assert j.status == "DONE"
        assert sum(j.result.values()) == j.runs
        assert all(len(k) == 4 and set(k) <= {"0", "1"} for k in j.result)
    # A strong drive excites atoms: not every shot is all-ground.
    assert jobs[0].result.get("0000", 0) < 200
    # The same counters as the 0.24 SDK reads them (one results link per job).
    again = sdk.get_batch(b.id)
    assert [j.result for j in again.ordered_jobs] == [j.result for j in jobs]
    # This SDK never calls the /status routes; qcloud serves them anyway.
    r = requests.get(f"{u}/pasqal/core-fast/api/v1/batches/{b.id}/status",
                     headers={"Authorization": f"Bearer {alice['token']}"})
    assert r.status_code == 200 and r.json()["data"]["status"] == "DONE"
