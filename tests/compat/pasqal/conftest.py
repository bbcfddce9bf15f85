"""Starts `qcloud serve` on a fresh database for the Pasqal suite; gives the URL and a project's token."""
import os, re, subprocess, time, uuid
import pytest
import requests

ADMIN = "pasqal_suite_admin_token_0123456789"


@pytest.fixture(scope="session")
def server():
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    db = "pasqal_compat_" + uuid.uuid4().hex[:8]
    root = base.rsplit("/", 1)[0]
    subprocess.run(["psql", base, "-qc", f"CREATE DATABASE {db}"], check=True)
    env = dict(os.environ, DATABASE_URL=f"{root}/{db}", QCLOUD_ADMIN_TOKEN=ADMIN, QCLOUD_INTERACTIVE_TTL="3")
    proc = subprocess.Popen([os.environ["QCLOUD_BIN"], "serve", "--listen", "127.0.0.1:0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = None
    for line in proc.stdout:
        m = re.search(r"qcloud listening on (http://\S+)", line)
        if m:
            url = m.group(1)
            break
    assert url, "qcloud serve printed no address"
    def tok(project, user):
        out = subprocess.run([os.environ["QCLOUD_BIN"], "tokens", "create", "--project", project, "--user", user],
                             env=env, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        return out
    yield {"url": url, "token": tok, "env": env}
    proc.terminate()
    proc.wait(10)
    subprocess.run(["psql", base, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"])


@pytest.fixture(scope="session")
def alice(server):
    t = server["token"]("alice", "alice")
    pid = requests.get(server["url"] + "/pasqal/account/api/v1/projects",
                       headers={"Authorization": f"Bearer {t}"}).json()["data"][0]["id"]
    return {"token": t, "project_id": pid}
