"""Run by the nova virtual environment's Python (not the agent's): sends compute RPC requests
with nova's own ComputeAPI, or with oslo.messaging's RPCClient, and prints one JSON line per
request with its outcome.

    python send.py TRANSPORT_URL HOST

then one JSON request a line on stdin: {"sender": "nova" | "oslo", "method": ..., "call": bool,
"instance_uuid": ..., "request_id": ..., "args": {...}}; one JSON line answers each
({"ok": true, "result": ...} or {"ok": false, "error": "Class: message"}).
"""

import json
import sys


def nova_sender(transport_url):
    import tempfile

    from nova import conf, context, objects, rpc
    from nova.compute import rpcapi

    # nova reads the transport as a deployment does: from its configuration file (the
    # option is registered by oslo.messaging only when the transport is made)
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as fh:
        fh.write(f"[DEFAULT]\ntransport_url = {transport_url}\n"
                 "[upgrade_levels]\ncompute = 6.0\n")
    config = conf.CONF
    config(["--config-file", fh.name], project="nova", default_config_files=[])
    objects.register_all()
    rpc.set_defaults(control_exchange="nova")  # as nova.config.parse_args does
    rpc.init(config)
    api = rpcapi.ComputeAPI()

    def send(request, host):
        ctxt = context.RequestContext(user_id="nova-user", project_id="nova-project",
                                      request_id=request["request_id"], is_admin=True)
        instance = objects.Instance(uuid=request["instance_uuid"], host=host, node=host)
        method = request["method"]
        if method == "stop_instance":
            return api.stop_instance(ctxt, instance, do_cast=not request.get("call"),
                                     clean_shutdown=True)
        if method == "start_instance":
            return api.start_instance(ctxt, instance)
        if method == "reboot_instance":
            return api.reboot_instance(ctxt, instance, block_device_info=None,
                                       reboot_type=request["args"].get("reboot_type", "SOFT"))
        raise ValueError(f"nova sender: {method} not scripted")
    return send


def oslo_sender(transport_url):
    import oslo_messaging
    from oslo_config import cfg

    oslo_messaging.set_transport_defaults("nova")
    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=transport_url)

    def send(request, host):
        target = oslo_messaging.Target(topic="compute", server=host, version="6.0")
        client = oslo_messaging.get_rpc_client(transport, target, timeout=60)
        ctxt = {"request_id": request["request_id"], "user_id": "oslo-user",
                "project_id": "oslo-project", "roles": ["admin"], "is_admin": True}
        args = dict(request.get("args", {}))
        args["instance"] = {"nova_object.name": "Instance", "nova_object.namespace": "nova",
                            "nova_object.version": "2.8",
                            "nova_object.data": {"uuid": request["instance_uuid"],
                                                 "host": host}}
        if request.get("call"):
            return client.call(ctxt, request["method"], **args)
        return client.cast(ctxt, request["method"], **args)
    return send


def main():
    transport_url, host = sys.argv[1], sys.argv[2]
    senders = {}
    for line in sys.stdin:
        request = json.loads(line)
        kind = request["sender"]
        try:
            if kind not in senders:
                senders[kind] = (nova_sender if kind == "nova" else oslo_sender)(transport_url)
            result = senders[kind](request, host)
            print(json.dumps({"ok": True, "result": result}), flush=True)
        except Exception as exc:  # the caller reads what the remote side said
            print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}),
                  flush=True)


if __name__ == "__main__":
    main()
