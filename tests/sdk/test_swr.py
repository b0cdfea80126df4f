"""SWR instance jobs (SwrClient): operations recorded with `taskd ops create`, run by a real `taskd worker`,
listed, shown and deleted with the official SDK."""

from __future__ import annotations

import re
import uuid

import pytest
from huaweicloudsdkswr.v2 import DeleteInstanceJobRequest, ListInstanceJobsRequest, ShowInstanceJobRequest, SwrClient

from taskd_sdk import OPS_SCRIPT, Worker, expect_error, ops_create, raw_json, service_client, wait_for

TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


@pytest.fixture
def swr(server, creds):
    return service_client(SwrClient, server.url, creds)


def jobs(client, **q):
    return client.list_instance_jobs(ListInstanceJobsRequest(**q))


def test_jobs_run_and_filter_by_status(server, creds, swr):
    inst = str(uuid.uuid4())
    ok = ops_create(server, creds, "swr", inst, "CreateInstance", name="test-public", target="res-ok")
    bad = ops_create(server, creds, "swr", inst, "CreateInstance", name="test-private", target="bad-res")
    waiting = ops_create(server, creds, "swr", inst, "DeleteInstance", target="res-later")
    listed = jobs(swr)
    assert listed.total == 3 and isinstance(raw_json(listed)["total"], int)
    assert [j.id for j in listed.jobs] == [waiting["operation_id"], bad["operation_id"], ok["operation_id"]]
    j = listed.jobs[2]
    assert (j.instance_id, j.resource_id, j.resource_name, j.type, j.status) == (
        inst, "res-ok", "test-public", "CreateInstance", "Creating")
    assert TIME_RE.match(j.created_at) and TIME_RE.match(j.updated_at)
    worker = Worker(server.url, creds, ["CreateInstance"], ["sh", "-c", OPS_SCRIPT])
    try:
        wait_for(lambda: jobs(swr, status="Creating").total == 1 and jobs(swr, status="Running").total == 0,
                 "both CreateInstance jobs finished")
    finally:
        worker.stop()
    assert [x.id for x in jobs(swr, status="Success").jobs] == [ok["operation_id"]]
    failed = jobs(swr, status="Failed").jobs
    assert [x.id for x in failed] == [bad["operation_id"]] and failed[0].reason == "quota exceeded"
    assert [x.id for x in jobs(swr, status="Creating").jobs] == [waiting["operation_id"]]
    assert jobs(swr, status="Initializing").total == 0
    shown = swr.show_instance_job(ShowInstanceJobRequest(job_id=bad["operation_id"]))
    assert (shown.status, shown.reason, shown.resource_id) == ("Failed", "quota exceeded", "bad-res")
    # Delete: a finished job only.
    expect_error(lambda: swr.delete_instance_job(DeleteInstanceJobRequest(job_id=waiting["operation_id"])), 409,
                 "SVCSTG.SWR.4090001")
    assert swr.delete_instance_job(DeleteInstanceJobRequest(job_id=bad["operation_id"])).status_code == 204
    expect_error(lambda: swr.show_instance_job(ShowInstanceJobRequest(job_id=bad["operation_id"])), 404,
                 "SVCSTG.SWR.4040001")
    assert jobs(swr).total == 2


def test_paging_at_its_boundaries(server, creds, swr):
    inst = str(uuid.uuid4())
    ids = [ops_create(server, creds, "swr", inst, "CreateInstance")["operation_id"] for _ in range(4)]
    newest = list(reversed(ids))
    assert [j.id for j in jobs(swr, offset=1, limit=2).jobs] == newest[1:3]
    assert [j.id for j in jobs(swr, offset=0, limit=100).jobs] == newest
    assert jobs(swr, offset=4, limit=1).jobs == [] and jobs(swr, offset=4, limit=1).total == 4
    assert [j.id for j in jobs(swr, offset=3, limit=1).jobs] == newest[3:]


@pytest.mark.parametrize("query", [
    dict(status="running"), dict(status="Deleted"), dict(offset=-1, limit=1), dict(offset=0, limit=0),
    dict(offset=0, limit=101), dict(offset=1), dict(limit=1),
])
def test_bad_queries_are_refused(swr, query):
    expect_error(lambda: jobs(swr, **query), 400, "SVCSTG.SWR.4000001")


def test_projects_are_isolated_and_403_is_explained(server, creds, swr):
    job = ops_create(server, creds, "swr", str(uuid.uuid4()), "CreateInstance")
    other = server.create_credentials()
    other_client = service_client(SwrClient, server.url, other)
    assert jobs(other_client).total == 0
    expect_error(lambda: other_client.show_instance_job(ShowInstanceJobRequest(job_id=job["operation_id"])), 404,
                 "SVCSTG.SWR.4040001")
    expect_error(lambda: swr.show_instance_job(ShowInstanceJobRequest(job_id="not-a-job")), 400,
                 "SVCSTG.SWR.4000001")
    wrong_path = service_client(SwrClient, server.url, creds, project_id=other.project_id)
    e = expect_error(lambda: jobs(wrong_path), 403, "SVCSTG.SWR.4030001")
    assert e.encoded_auth_msg
