"""The device registry through the official IoTDAClient: devices, static groups, members, paging, errors, scoping."""

from __future__ import annotations

import re

from huaweicloudsdkiotda.v5 import (
    AddDevice,
    AddDeviceGroupDTO,
    AddDeviceGroupRequest,
    AddDeviceRequest,
    AuthInfo,
    AuthInfoWithoutSecret,
    CreateOrDeleteDeviceInGroupRequest,
    DeleteDeviceGroupRequest,
    DeleteDeviceRequest,
    FreezeDeviceRequest,
    ListDeviceGroupsRequest,
    ListDevicesRequest,
    ShowDeviceGroupRequest,
    ShowDeviceRequest,
    UnfreezeDeviceRequest,
    UpdateDevice,
    UpdateDeviceRequest,
)

from taskd_sdk import E_BAD_TIME, E_INVALID, expect_error, new_instance_id

E_DEVICE_NOT_FOUND = "IOTDA.014000"
E_DEVICE_EXISTS = "IOTDA.014031"
E_SUB_DEVICE_FREEZE = "IOTDA.014038"
E_ALREADY_FROZEN = "IOTDA.014039"
E_NOT_FROZEN = "IOTDA.014040"
E_HAS_SUB_DEVICES = "IOTDA.014041"
E_GROUP_NOT_FOUND = "IOTDA.015000"
E_GROUP_NAME_EXISTS = "IOTDA.015001"
E_GROUP_HAS_CHILDREN = "IOTDA.015005"


def add(api, instance_id=None, **fields):
    return api.client.add_device(AddDeviceRequest(instance_id=instance_id, body=AddDevice(**fields)))


def show(api, device_id, instance_id=None):
    return api.client.show_device(ShowDeviceRequest(instance_id=instance_id, device_id=device_id))


def listing(api, instance_id=None, **query):
    return api.client.list_devices(ListDevicesRequest(instance_id=instance_id, **query))


def ids(resp):
    return [d.device_id for d in resp.devices]


def add_group(api, instance_id=None, **fields):
    return api.client.add_device_group(AddDeviceGroupRequest(instance_id=instance_id, body=AddDeviceGroupDTO(**fields)))


def member(api, group_id, action, device_id, instance_id=None):
    return api.client.create_or_delete_device_in_group(CreateOrDeleteDeviceInGroupRequest(
        instance_id=instance_id, group_id=group_id, action_id=action, device_id=device_id))


# ---- devices ----------------------------------------------------------------------------------------------------


def test_add_show_update_delete(api):
    resp = add(api, node_id="node_1", product_id="prod_1", device_name="meter_1", description="north(A)",
               auth_info=AuthInfo(secret="secret_0001", secure_access=True, timeout=300),
               extension_info={"floor": 3})
    assert resp.status_code == 201
    assert resp.device_id == "prod_1_node_1"
    assert resp.gateway_id == "prod_1_node_1" and resp.node_type == "GATEWAY"
    assert resp.status == "INACTIVE"
    assert resp.auth_info.secret == "secret_0001" and resp.auth_info.auth_type == "SECRET"
    assert resp.auth_info.secure_access is True and resp.auth_info.timeout == 300
    assert re.fullmatch(r"\d{8}T\d{6}Z", resp.create_time)
    assert resp.extension_info == {"floor": 3}

    shown = show(api, "prod_1_node_1")
    assert shown.status_code == 200
    assert (shown.device_name, shown.description, shown.product_id) == ("meter_1", "north(A)", "prod_1")
    assert shown.auth_info.secret is None, "the secret is shown only when the device is added"

    generated = add(api, node_id="node_2", product_id="prod_1", device_id="my_device")
    assert generated.device_id == "my_device"
    assert re.fullmatch(r"[0-9a-f]{32}", generated.auth_info.secret)

    upd = api.client.update_device(UpdateDeviceRequest(device_id="prod_1_node_1", body=UpdateDevice(
        device_name="renamed", auth_info=AuthInfoWithoutSecret(timeout=0))))
    assert upd.status_code == 200
    assert (upd.device_name, upd.description, upd.auth_info.timeout) == ("renamed", "north(A)", 0)
    assert upd.auth_info.secret is None

    assert api.client.delete_device(DeleteDeviceRequest(device_id="prod_1_node_1")).status_code == 204
    expect_error(lambda: show(api, "prod_1_node_1"), 404, E_DEVICE_NOT_FOUND)
    expect_error(lambda: api.client.delete_device(DeleteDeviceRequest(device_id="prod_1_node_1")),
                 404, E_DEVICE_NOT_FOUND)
    expect_error(lambda: api.client.update_device(UpdateDeviceRequest(
        device_id="prod_1_node_1", body=UpdateDevice(device_name="x_1"))), 404, E_DEVICE_NOT_FOUND)
    assert ids(listing(api)) == ["my_device"]


def test_duplicate_device_is_refused(api):
    add(api, node_id="n1", product_id="p1")
    expect_error(lambda: add(api, node_id="n1", product_id="p1"), 400, E_DEVICE_EXISTS)
    expect_error(lambda: add(api, node_id="other", product_id="p2", device_id="p1_n1"), 400, E_DEVICE_EXISTS)
    assert listing(api).page.count == 1


def test_invalid_devices_write_nothing(api):
    for fields in [
        {"product_id": "p1"},
        {"node_id": "n1"},
        {"node_id": "n" * 65, "product_id": "p1"},
        {"node_id": "bad node", "product_id": "p1"},
        {"node_id": "n1", "product_id": "p" * 37},
        {"node_id": "n1", "product_id": "p1", "device_id": "d" * 129},
        {"node_id": "n1", "product_id": "p1", "device_name": "n" * 257},
        {"node_id": "n1", "product_id": "p1", "description": "d" * 2049},
        {"node_id": "n1", "product_id": "p1", "app_id": "a" * 37},
        {"node_id": "n1", "product_id": "p1", "auth_info": AuthInfo(secret="short")},
        {"node_id": "n1", "product_id": "p1", "auth_info": AuthInfo(auth_type="TOKEN")},
        {"node_id": "n1", "product_id": "p1", "gateway_id": "no_such_gateway"},
    ]:
        expect_error(lambda: add(api, **fields), 400, E_INVALID)
    assert listing(api).page.count == 0


def test_freeze_and_unfreeze(api):
    add(api, node_id="n1", product_id="p1")
    expect_error(lambda: api.client.unfreeze_device(UnfreezeDeviceRequest(device_id="p1_n1")), 403, E_NOT_FROZEN)
    assert api.client.freeze_device(FreezeDeviceRequest(device_id="p1_n1")).status_code == 204
    assert show(api, "p1_n1").status == "FROZEN"
    assert [d.status for d in listing(api).devices] == ["FROZEN"]
    expect_error(lambda: api.client.freeze_device(FreezeDeviceRequest(device_id="p1_n1")), 403, E_ALREADY_FROZEN)
    assert api.client.unfreeze_device(UnfreezeDeviceRequest(device_id="p1_n1")).status_code == 204
    assert show(api, "p1_n1").status == "INACTIVE"
    expect_error(lambda: api.client.freeze_device(FreezeDeviceRequest(device_id="ghost")), 404, E_DEVICE_NOT_FOUND)


def test_sub_devices(api):
    add(api, node_id="gw", product_id="p1")
    child = add(api, node_id="c1", product_id="p1", gateway_id="p1_gw")
    assert (child.gateway_id, child.node_type) == ("p1_gw", "ENDPOINT")
    add(api, node_id="c2", product_id="p1", gateway_id="p1_c1")
    add(api, node_id="other", product_id="p1")
    assert ids(listing(api, gateway_id="p1_gw")) == ["p1_c1"]
    assert ids(listing(api, gateway_id="p1_gw", is_cascade_query=True)) == ["p1_c2", "p1_c1"]
    expect_error(lambda: api.client.freeze_device(FreezeDeviceRequest(device_id="p1_c1")), 403, E_SUB_DEVICE_FREEZE)
    expect_error(lambda: api.client.delete_device(DeleteDeviceRequest(device_id="p1_gw")), 403, E_HAS_SUB_DEVICES)


def test_list_paging_and_filters(plain_api):
    api = plain_api
    for i in range(13):
        add(api, node_id=f"n{i:02d}", product_id="pa" if i % 3 == 0 else "pb", device_name=f"name_{i}")
    first = listing(api)
    assert first.page.count == 13 and len(first.devices) == 10, "default limit 10"
    assert ids(first)[0] == "pa_n12", "newest first"
    assert re.fullmatch(r"[0-9a-f]{24}", first.page.marker)
    rest = listing(api, marker=first.page.marker)
    assert ids(rest) == ["pb_n02", "pb_n01", "pa_n00"] and rest.page.count == 13
    assert ids(listing(api, limit=2, offset=3)) == ["pa_n09", "pb_n08"]
    # Page through with limit 4 by marker: every device once.
    seen, marker = [], None
    while True:
        page = listing(api, limit=4, marker=marker)
        seen += ids(page)
        if len(page.devices) < 4:
            break
        marker = page.page.marker
    assert len(seen) == 13 and len(set(seen)) == 13
    assert ids(listing(api, product_id="pa", limit=50)) == ["pa_n12", "pa_n09", "pa_n06", "pa_n03", "pa_n00"]
    assert listing(api, product_id="pa").page.count == 5
    assert ids(listing(api, node_id="n05")) == ["pb_n05"]
    assert ids(listing(api, device_name="name_7")) == ["pb_n07"]
    assert listing(api, start_time="20000101T000000Z", end_time="29990101T000000Z").page.count == 13
    assert listing(api, end_time="20000101T000000Z").page.count == 0
    for query, code in [({"limit": 0}, E_INVALID), ({"limit": 51}, E_INVALID), ({"offset": 501}, E_INVALID),
                        ({"marker": "zz"}, E_INVALID), ({"node_id": "n" * 65}, E_INVALID),
                        ({"start_time": "2026-01-01"}, E_BAD_TIME)]:
        expect_error(lambda: listing(api, **query), 400, code)


# ---- groups -----------------------------------------------------------------------------------------------------


def test_groups_and_members(api):
    for node in ("a", "b", "c"):
        add(api, node_id=node, product_id="p1")
    g = add_group(api, name="north meters", description="floor 3")
    assert g.status_code == 201
    assert re.fullmatch(r"[0-9a-f-]{36}", g.group_id) and g.group_type == "STATIC"
    shown = api.client.show_device_group(ShowDeviceGroupRequest(group_id=g.group_id))
    assert (shown.name, shown.description, shown.group_type) == ("north meters", "floor 3", "STATIC")
    expect_error(lambda: add_group(api, name="north meters"), 400, E_GROUP_NAME_EXISTS)
    expect_error(lambda: add_group(api, name="x" * 65), 400, E_INVALID)
    expect_error(lambda: add_group(api, name="dyn", group_type="DYNAMIC", dynamic_group_rule="x"), 400, E_INVALID)

    for device_id in ("p1_a", "p1_b"):
        assert member(api, g.group_id, "addDevice", device_id).status_code == 200
    assert member(api, g.group_id, "removeDevice", "p1_b").status_code == 200
    expect_error(lambda: member(api, g.group_id, "addDevice", "ghost"), 404, E_DEVICE_NOT_FOUND)
    expect_error(lambda: member(api, "00000000-0000-0000-0000-000000000000", "addDevice", "p1_a"),
                 404, E_GROUP_NOT_FOUND)
    expect_error(lambda: member(api, g.group_id, "moveDevice", "p1_a"), 400, E_INVALID)

    child = add_group(api, name="child", super_group_id=g.group_id)
    assert child.super_group_id == g.group_id
    listed = api.client.list_device_groups(ListDeviceGroupsRequest(limit=1))
    assert listed.page.count == 2 and [x.group_id for x in listed.device_groups] == [child.group_id]
    rest = api.client.list_device_groups(ListDeviceGroupsRequest(marker=listed.page.marker))
    assert [x.group_id for x in rest.device_groups] == [g.group_id]
    by_name = api.client.list_device_groups(ListDeviceGroupsRequest(name="child"))
    assert [x.group_id for x in by_name.device_groups] == [child.group_id]

    # A parent with a child can't go; deleting a group keeps its devices; deleting a device leaves its groups.
    expect_error(lambda: api.client.delete_device_group(DeleteDeviceGroupRequest(group_id=g.group_id)),
                 403, E_GROUP_HAS_CHILDREN)
    assert api.client.delete_device_group(DeleteDeviceGroupRequest(group_id=child.group_id)).status_code == 204
    assert api.client.delete_device(DeleteDeviceRequest(device_id="p1_a")).status_code == 204
    assert member(api, g.group_id, "addDevice", "p1_c").status_code == 200
    assert api.client.delete_device_group(DeleteDeviceGroupRequest(group_id=g.group_id)).status_code == 204
    expect_error(lambda: api.client.show_device_group(ShowDeviceGroupRequest(group_id=g.group_id)),
                 404, E_GROUP_NOT_FOUND)
    assert show(api, "p1_c").device_id == "p1_c"


def test_targets_filter_resolves_group_members_at_creation(api):
    for node in ("a", "b", "c", "d"):
        add(api, node_id=node, product_id="p1")
    north, south, empty = (add_group(api, name=n) for n in ("north", "south", "empty"))
    for group, device_ids in ((north, ("p1_a", "p1_b")), (south, ("p1_b", "p1_c"))):
        for device_id in device_ids:
            member(api, group.group_id, "addDevice", device_id)
    body = dict(task_name="by_group", task_type="firmwareUpgrade", document={"package_ids": ["32822e5744a45ede319d2c50"]})

    created = api.create(dict(body, targets_filter={"group_ids": [north.group_id, south.group_id]}))
    assert created.status_code == 201
    assert created.status == "Waitting" and created.task_progress.total == 3
    assert created.targets_filter == {"group_ids": [north.group_id, south.group_id]}
    # The members when the task was created: a device joining later is not a target.
    member(api, north.group_id, "addDevice", "p1_d")
    assert api.status_of(created.task_id) == dict.fromkeys(("p1_a", "p1_b", "p1_c"), "Waitting")

    count = api.list().page.count
    for group_ids in ([north.group_id, "00000000-0000-0000-0000-000000000000"], [empty.group_id]):
        expect_error(lambda: api.create(dict(body, targets_filter={"group_ids": group_ids})), 400, E_INVALID)
    assert api.list().page.count == count


# ---- scoping ----------------------------------------------------------------------------------------------------


def test_projects_do_not_see_each_others_devices(api, new_api):
    other = new_api()
    add(other, node_id="n1", product_id="p1")
    g = add_group(other, name="theirs")
    expect_error(lambda: show(api, "p1_n1"), 404, E_DEVICE_NOT_FOUND)
    expect_error(lambda: api.client.freeze_device(FreezeDeviceRequest(device_id="p1_n1")), 404, E_DEVICE_NOT_FOUND)
    expect_error(lambda: api.client.delete_device(DeleteDeviceRequest(device_id="p1_n1")), 404, E_DEVICE_NOT_FOUND)
    expect_error(lambda: api.client.show_device_group(ShowDeviceGroupRequest(group_id=g.group_id)),
                 404, E_GROUP_NOT_FOUND)
    assert listing(api).page.count == 0
    assert api.client.list_device_groups(ListDeviceGroupsRequest()).page.count == 0
    # The same ids are free here, and theirs stay untouched.
    assert add(api, node_id="n1", product_id="p1").status_code == 201
    assert show(other, "p1_n1").status == "INACTIVE"
    assert ids(listing(other)) == ["p1_n1"]


def test_instances_do_not_see_each_others_devices(api):
    inst = new_instance_id()
    add(api, instance_id=inst, node_id="n1", product_id="p1")
    g = add_group(api, instance_id=inst, name="g1")
    expect_error(lambda: show(api, "p1_n1"), 404, E_DEVICE_NOT_FOUND)
    expect_error(lambda: show(api, "p1_n1", instance_id=new_instance_id()), 404, E_DEVICE_NOT_FOUND)
    expect_error(lambda: api.client.show_device_group(ShowDeviceGroupRequest(group_id=g.group_id)),
                 404, E_GROUP_NOT_FOUND)
    expect_error(lambda: member(api, g.group_id, "addDevice", "p1_n1"), 404, E_GROUP_NOT_FOUND)
    assert listing(api).page.count == 0
    assert show(api, "p1_n1", instance_id=inst).device_id == "p1_n1"
    assert listing(api, instance_id=inst).page.count == 1
    assert member(api, g.group_id, "addDevice", "p1_n1", instance_id=inst).status_code == 200
