"""OTA package records through the official IoTDAClient: create, show, list (filters, paging), delete, field rules,
scoping and Instance-Id. taskd stores file_location as given (sign lowercased) and does not read the object yet."""

from __future__ import annotations

import json
import re

from huaweicloudsdkiotda.v5 import (
    CreateOtaPackage,
    CreateOtaPackageRequest,
    DeleteOtaPackageRequest,
    FileLocation,
    ListOtaPackageInfoRequest,
    ObsLocation,
    ShowOtaPackageRequest,
)

from taskd_sdk import E_INVALID, expect_error, new_instance_id

E_PACKAGE_NOT_FOUND = "IOTDA.014903"  # taskd's code: Huawei documents none (docs/ota.md)

SIGN = "0123456789ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef"


def location(**fields):
    obs = dict(region_name="cn-north-4", bucket_name="abc", object_key="bbb/upgrade.bin")
    obs.update(fields)
    return FileLocation(obs_location=ObsLocation(**obs))


def create(api, instance_id=None, **fields):
    body = dict(package_type="firmwarePackage", product_id="prod_1", version="V2.0", file_location=location())
    body.update(fields)
    return api.client.create_ota_package(CreateOtaPackageRequest(instance_id=instance_id,
                                                                 body=CreateOtaPackage(**body)))


def show(api, package_id, instance_id=None):
    return api.client.show_ota_package(ShowOtaPackageRequest(instance_id=instance_id, package_id=package_id))


def delete(api, package_id, instance_id=None):
    return api.client.delete_ota_package(DeleteOtaPackageRequest(instance_id=instance_id, package_id=package_id))


def listing(api, instance_id=None, **query):
    return api.client.list_ota_package_info(ListOtaPackageInfoRequest(instance_id=instance_id, **query))


def ids(resp):
    return [p.package_id for p in resp.packages]


def test_create_echoes_every_field_then_show_and_delete(api):
    resp = create(api, app_id="61f7e74d036aca5be29e1ed4", package_type="firmwarePackage",
                  product_id="5ba24f5ebbe8f56f5a14f605", version="V2.0", support_source_versions=["V1.0", "V1.1"],
                  description="package for version V1.0 and V1.1", custom_info='{"reboot": true}',
                  file_location=location(sign_method="SHA256", sign=SIGN))
    assert resp.status_code == 201
    assert re.fullmatch(r"[0-9a-f]{24}", resp.package_id)
    assert resp.app_id == "61f7e74d036aca5be29e1ed4"
    assert resp.package_type == "firmwarePackage"
    assert resp.product_id == "5ba24f5ebbe8f56f5a14f605"
    assert resp.product_name is None  # taskd keeps no products
    assert resp.module_name is None
    assert resp.version == "V2.0"
    assert resp.support_source_versions == ["V1.0", "V1.1"]
    assert resp.description == "package for version V1.0 and V1.1"
    assert resp.custom_info == '{"reboot": true}'
    assert re.fullmatch(r"\d{8}T\d{6}Z", resp.create_time)
    obs = resp.file_location.obs_location
    assert (obs.region_name, obs.bucket_name, obs.object_key) == ("cn-north-4", "abc", "bbb/upgrade.bin")
    assert obs.sign_method == "SHA256"
    assert obs.sign == SIGN.lower()  # stored lowercase (spec Q19)

    shown = show(api, resp.package_id)
    assert shown.status_code == 200
    assert shown.to_json_object() == resp.to_json_object()

    gone = delete(api, resp.package_id)
    assert gone.status_code == 204
    expect_error(lambda: show(api, resp.package_id), 404, E_PACKAGE_NOT_FOUND)
    expect_error(lambda: delete(api, resp.package_id), 404, E_PACKAGE_NOT_FOUND)
    assert listing(api).page.count == 0


def test_module_package_and_defaults(api):
    resp = create(api, package_type="modulePackage", module_name="wifi.module_1", version="1.0.3")
    assert resp.module_name == "wifi.module_1" and resp.package_type == "modulePackage"
    # sign_method defaults to SHA256; no sign, no app: absent.
    obs = show(api, resp.package_id).file_location.obs_location
    assert obs.sign_method == "SHA256" and obs.sign is None
    assert resp.app_id is None and resp.support_source_versions == []
    # A module name on a firmware package is refused.
    expect_error(lambda: create(api, module_name="m1"), 400, E_INVALID)


def test_list_filters_and_paging(api):
    made = []
    for kind, product, version, app_id in [
        ("firmwarePackage", "prod_a", "V1", "space_1"),
        ("softwarePackage", "prod_a", "V2", None),
        ("firmwarePackage", "prod_b", "V2", "space_1"),
        ("firmwarePackage", "prod_b", "V3", None),
        ("softwarePackage", "prod_c", "V1", None),
    ]:
        made.append(create(api, package_type=kind, product_id=product, version=version, app_id=app_id).package_id)
    newest_first = made[::-1]
    all_ = listing(api)
    assert ids(all_) == newest_first and all_.page.count == 5
    assert all_.page.marker == made[0]
    # List items carry no file_location (OtaPackageInfo has none); show has it.
    raw = json.loads(all_.raw_content)["packages"]
    assert [p["package_id"] for p in raw] == newest_first
    assert all("file_location" not in p for p in raw)
    assert all_.packages[0].version == "V1" and all_.packages[0].product_id == "prod_c"

    def pick(*i):
        return [made[k] for k in i]

    for query, want in [
        (dict(app_id="space_1"), pick(2, 0)),
        (dict(package_type="softwarePackage"), pick(4, 1)),
        (dict(package_type="firmwarePackage"), pick(3, 2, 0)),
        (dict(product_id="prod_b"), pick(3, 2)),
        (dict(version="V2"), pick(2, 1)),
        (dict(version="V2", package_type="firmwarePackage"), pick(2)),
        (dict(version="V9"), []),
    ]:
        resp = listing(api, **query)
        assert ids(resp) == want, query
        assert resp.page.count == len(want), query

    first = listing(api, limit=2)
    assert ids(first) == newest_first[:2] and first.page.count == 5
    assert first.page.marker == newest_first[1]
    nxt = listing(api, limit=2, marker=first.page.marker)
    assert ids(nxt) == newest_first[2:4] and nxt.page.count == 5
    assert ids(listing(api, marker=first.page.marker, offset=2)) == newest_first[4:]
    assert ids(listing(api, offset=1, limit=1)) == newest_first[1:2]
    assert ids(listing(api, marker="ffffffffffffffffffffffff")) == newest_first

    for bad in [dict(limit=0), dict(limit=51), dict(offset=501), dict(marker="xyz"),
                dict(package_type="firmware"), dict(version="V 1")]:
        expect_error(lambda: listing(api, **bad), 400, E_INVALID)


def test_field_rules_are_refused_and_write_nothing(shared_api):
    api = shared_api
    before = listing(api).page.count
    for bad in [
        dict(package_type="imagePackage"),
        dict(product_id="p" * 37),
        dict(version="V 2"),
        dict(version="v" * 257),
        dict(app_id="a.b"),
        dict(support_source_versions=[f"V{i}" for i in range(21)]),
        dict(support_source_versions=["V1,0"]),
        dict(description="d" * 1025),
        dict(custom_info="c" * 4097),
        dict(file_location=location(bucket_name="ABC")),
        dict(file_location=location(bucket_name="ab")),
        dict(file_location=location(object_key="k" * 1025)),
        dict(file_location=location(sign_method="MD5")),
        dict(file_location=location(sign="a" * 63)),
        dict(file_location=location(sign="g" * 64)),
        dict(file_location=FileLocation()),
    ]:
        expect_error(lambda: create(api, **bad), 400, E_INVALID)
    # The limits themselves are accepted.
    ok = create(api, version="v" * 256, support_source_versions=[f"V{i}" for i in range(20)],
                description="描" * 1024, custom_info="c" * 4096, file_location=location(bucket_name="b" * 63))
    assert ok.status_code == 201
    assert listing(api).page.count == before + 1
    delete(api, ok.package_id)


def test_unknown_ids_are_404(shared_api):
    for raw in ["32822e5744a45ede319d2c50", "abc", "ABCDEF000000000000000000"]:
        expect_error(lambda: show(shared_api, raw), 404, E_PACKAGE_NOT_FOUND)
        expect_error(lambda: delete(shared_api, raw), 404, E_PACKAGE_NOT_FOUND)


def test_projects_do_not_see_each_others_packages(api, new_api):
    other = new_api()
    theirs = create(other, version="V7").package_id
    expect_error(lambda: show(api, theirs), 404, E_PACKAGE_NOT_FOUND)
    expect_error(lambda: delete(api, theirs), 404, E_PACKAGE_NOT_FOUND)
    assert listing(api).page.count == 0
    assert show(other, theirs).version == "V7"
    assert ids(listing(other)) == [theirs]


def test_instance_id_scopes_packages(api):
    inst = new_instance_id()
    mine = create(api, instance_id=inst, version="V1").package_id
    expect_error(lambda: show(api, mine), 404, E_PACKAGE_NOT_FOUND)
    expect_error(lambda: show(api, mine, instance_id=new_instance_id()), 404, E_PACKAGE_NOT_FOUND)
    expect_error(lambda: delete(api, mine), 404, E_PACKAGE_NOT_FOUND)
    assert listing(api).page.count == 0
    assert show(api, mine, instance_id=inst).version == "V1"
    assert ids(listing(api, instance_id=inst)) == [mine]
    assert delete(api, mine, instance_id=inst).status_code == 204
    assert listing(api, instance_id=inst).page.count == 0
