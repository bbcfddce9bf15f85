"""The unmodified pasqal-cloud 0.24.0 SDK against qcloud's /pasqal facade (issue 10)."""
import json, pathlib, subprocess, os, gzip
from datetime import datetime, timedelta, timezone
import requests
import pytest
from pasqal_cloud import SDK
from pasqal_cloud.authentication import TokenProvider
from pasqal_cloud.endpoints import Endpoints, TokenProviderConf
from pasqal_cloud.utils.filters import BatchFilters, JobFilters, RebatchFilters, CancelJobFilters, PaginationParams
from pasqal_cloud.utils.constants import BatchStatus, JobStatus

SEQ = (pathlib.Path(__file__).parent / "param_blackman_ramp.json").read_text()


class Static(TokenProvider):
    def __init__(self, t):
        self.t = t

    def get_token(self):
        return self.t


def sdk_for(server, who):
    u = server["url"]
    return SDK(project_id=who["project_id"], token_provider=Static(who["token"]),
               endpoints=Endpoints(core=f"{u}/pasqal/core-fast", account=f"{u}/pasqal/account"))


def test_closed_batch_two_jobs_counters_sum_to_runs(server, alice):
    sdk = sdk_for(server, alice)
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
    assert sdk.get_batch_status(b.id) == BatchStatus.DONE


def test_open_batch_add_jobs_then_close(server, alice):
    sdk = sdk_for(server, alice)
    b = sdk.create_batch(SEQ, [{"runs": 20, "variables": {"omega_max": 1.0}}], device_type="EMU_FREE", open=True)
    assert b.open
    b.add_jobs([{"runs": 30, "variables": {"omega_max": 2.0}}], wait=True)
    b.refresh()
    assert b.status in ("PENDING", "RUNNING")
    b.close(wait=True)
    b.refresh()
    assert b.status == "DONE" and not b.open
    assert sorted(j.runs for j in b.ordered_jobs) == [20, 30]
    assert all(sum(j.result.values()) == j.runs for j in b.ordered_jobs)


def test_idle_open_batch_times_out(server, alice):
    sdk = sdk_for(server, alice)
    b = sdk.create_batch(SEQ, [{"runs": 10, "variables": {"omega_max": 1.0}}], device_type="EMU_FREE",
                         open=True, wait=True)
    import time
    for _ in range(40):
        b.refresh()
        if b.status == "TIMED_OUT":
            break
        time.sleep(0.5)
    assert b.status == "TIMED_OUT"
    with pytest.raises(BaseException):
        b.add_jobs([{"runs": 10, "variables": {"omega_max": 1.0}}])


def test_filters_pagination_tags_rebatch_cancel(server, alice):
    sdk = sdk_for(server, alice)
    made = [sdk.create_batch(SEQ, [{"runs": 10 + i, "variables": {"omega_max": 1.0}}], device_type="EMU_FREE",
                             tags=["suite-f"], wait=True) for i in range(3)]
    ids = [b.id for b in made]
    page = sdk.get_batches(BatchFilters(id=ids), PaginationParams(offset=1, limit=1))
    assert page.total == 3 and len(page.results) == 1
    assert page.results[0].id == ids[1]  # newest first: [2, 1, 0]
    assert sdk.get_batches(BatchFilters(id=ids, status=[BatchStatus.DONE], open=False)).total == 3
    assert sdk.get_batches(BatchFilters(id=ids, status=[BatchStatus.RUNNING])).total == 0
    assert sdk.get_batches(BatchFilters(tag="suite-f", device_type=["EMU_FREE"])).total >= 3
    future = datetime.now(timezone.utc) + timedelta(days=1)
    assert sdk.get_batches(BatchFilters(id=ids, start_date=future)).total == 0
    assert sdk.get_batches(BatchFilters(id=ids, end_date=datetime.now() + timedelta(days=1))).total == 3

    jobs = sdk.get_jobs(JobFilters(batch_id=ids, min_runs=11))
    assert jobs.total == 2 and all(j.runs >= 11 for j in jobs.results)
    assert sdk.get_jobs(JobFilters(batch_id=ids, status=[JobStatus.DONE], errors=False)).total == 3

    sdk.set_batch_tags(ids[0], ["x", "y"])
    assert sdk.get_batch(ids[0]).tags == ["x", "y"]

    rb = sdk.rebatch(ids[2], RebatchFilters(min_runs=1, status=[JobStatus.DONE]))
    assert rb.parent_id == ids[2]
    assert [j.parent_id for j in rb.ordered_jobs] == [made[2].ordered_jobs[0].id]

    # Cancel: an open batch and its pending jobs.
    ob = sdk.create_batch(SEQ, [], device_type="FRESNEL", open=True)
    resp = sdk.cancel_batches([ob.id, ids[0]])
    assert [b.id for b in resp.batches] == [ob.id]
    assert str(ids[0]) in {str(k) for k in resp.errors}
    assert sdk.get_batch(ob.id).status == "CANCELED"


def test_cancel_jobs_by_ids_and_dates(server, alice):
    sdk = sdk_for(server, alice)
    # FRESNEL is slow (QPU-like timing), so later jobs are still pending when canceled.
    b = sdk.create_batch(SEQ, [{"runs": 5, "variables": {"omega_max": 1.0}} for _ in range(4)],
                         device_type="FRESNEL", open=True)
    jids = [j.id for j in b.ordered_jobs]
    r = sdk.cancel_jobs(b.id, CancelJobFilters(id=[jids[3]]))
    assert [j.id for j in r.jobs] == [jids[3]] and r.jobs[0].status == "CANCELED"
    r = sdk.cancel_jobs(b.id, CancelJobFilters(start_date=datetime.now(timezone.utc) - timedelta(hours=1),
                                               end_date=datetime.now(timezone.utc) + timedelta(hours=1)))
    assert {j.id for j in r.jobs} <= set(jids[:3])
    sdk.cancel_batch(b.id)


def test_password_login(server):
    env = server["env"]
    subprocess.run([os.environ["QCLOUD_BIN"], "users", "create", "--project", "bob", "--user", "bob@example.com",
                    "--password", "correct horse"], env=env, check=True, capture_output=True)
    u = server["url"]
    conf = TokenProviderConf(token_endpoint=f"{u}/pasqal/oauth/token", public_client_id="local",
                             audience="local", realm="local", grant_type="password")
    t = requests.post(f"{u}/pasqal/oauth/token", data={"username": "bob@example.com", "password": "correct horse"}).json()
    pid = requests.get(f"{u}/pasqal/account/api/v1/projects",
                       headers={"Authorization": f"Bearer {t['access_token']}"}).json()["data"][0]["id"]
    sdk = SDK(username="bob@example.com", password="correct horse", project_id=pid,
              endpoints=Endpoints(core=f"{u}/pasqal/core-fast", account=f"{u}/pasqal/account"), auth_config=conf)
    b = sdk.create_batch(SEQ, [{"runs": 10, "variables": {"omega_max": 1.0}}], device_type="EMU_FREE", wait=True)
    assert sum(b.ordered_jobs[0].result.values()) == 10
    bad = requests.post(f"{u}/pasqal/oauth/token", data={"username": "bob@example.com", "password": "wrong pw"})
    assert bad.status_code == 401


def test_other_project_is_404_and_bad_input_is_4xx(server, alice):
    u = server["url"] + "/pasqal/core-fast"
    sdk = sdk_for(server, alice)
    b = sdk.create_batch(SEQ, [{"runs": 5, "variables": {"omega_max": 1.0}}], device_type="EMU_FREE", wait=True)
    eve = server["token"]("eve", "eve")
    h = {"Authorization": f"Bearer {eve}"}
    assert requests.get(f"{u}/api/v2/batches/{b.id}", headers=h).status_code == 404
    assert requests.get(f"{u}/api/v2/jobs/{b.ordered_jobs[0].id}", headers=h).status_code == 404
    ha = {"Authorization": f"Bearer {alice['token']}", "Content-Type": "application/json"}
    body = {"sequence_builder": SEQ, "jobs": [], "open": False, "device_type": "EMU_FREE", "project_id": alice["project_id"]}
    cases = [
        (dict(body, project_id="00000000-0000-0000-0000-000000000000"), {}, 404),
        (dict(body, sequence_builder="{not json"), {}, 400),
        (dict(body, device_type="EMU_NOPE"), {}, 400),
        (dict(body, webhook="http://127.0.0.1:9/hook"), {}, 400),
    ]
    before = requests.get(f"{u}/api/v1/batches", headers=ha).json()["pagination"]["total"]
    for payload, extra, code in cases:
        r = requests.post(f"{u}/api/v1/batches", headers=ha, data=json.dumps(payload))
        assert r.status_code == code, (payload, r.text)
        assert r.json()["status"] == "fail" and isinstance(r.json()["data"], dict)
    r = requests.post(f"{u}/api/v1/batches", headers=dict(ha, **{"Content-Encoding": "gzip"}), data=b"not gzip")
    assert r.status_code == 400
    assert requests.get(f"{u}/api/v1/batches", headers=ha).json()["pagination"]["total"] == before
    assert requests.get(f"{u}/api/v1/batches?colour=red", headers=ha).status_code == 400
    assert requests.get(f"{u}/api/v2/jobs?id=nope", headers=ha).status_code == 400
    assert requests.post(f"{u}/api/v2/batches/{b.id}/jobs", headers=ha,
                         data=json.dumps([{"runs": 5}])).status_code == 409
    link = requests.get(f"{u}/api/v1/jobs/{b.ordered_jobs[0].id}/results_link", headers=ha).json()["data"]["results_link"]
    assert sum(requests.get(link).json()["counter"].values()) == 5
    assert requests.get(link[:-3] + "abc").status_code == 404
    # An expired link is 404 too (its expiry moved into the past in the suite's database).
    subprocess.run(["psql", server["env"]["DATABASE_URL"], "-qc",
                    f"UPDATE result_links SET expires_at = now() - interval '1 second' "
                    f"WHERE job_id = '{b.ordered_jobs[0].id}'"], check=True)
    r = requests.get(link)
    assert r.status_code == 404 and r.json()["status"] == "fail"


def test_device_specs_deserialize_in_pulser(server, alice):
    from pulser.json.abstract_repr.deserializer import deserialize_device
    sdk = sdk_for(server, alice)
    specs = sdk.get_device_specs_dict()
    assert {"EMU_FREE", "EMU_SV", "FRESNEL"} <= set(specs)
    assert deserialize_device(specs["FRESNEL"]).name == "AnalogDevice"
