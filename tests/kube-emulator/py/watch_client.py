"""Drives the kube-emulator with the official Python `kubernetes` client, for
tests/kube-emulator/tests/clients.rs. Speaks JSON lines on stdout; waits for "go" on stdin
between phases.

  1. list ConfigMaps in NAMESPACE            -> {"listed": [...], "rv": "..."}
  2. watch from that resourceVersion          -> {"event": "ADDED", "name": ..., "data": ...} ...
     until the ConfigMap STOP_NAME is DELETED
  3. print {"ready": true}, wait for "go" (the test compacts the history), watch from the
     first list's resourceVersion again        -> {"expired": 410}
  4. re-list                                   -> {"relisted": [...], "rv": "..."}
"""

import json
import sys

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def say(**kv):
    print(json.dumps(kv), flush=True)


def main():
    kubeconfig, namespace, stop_name = sys.argv[1:4]
    config.load_kube_config(config_file=kubeconfig)
    v1 = client.CoreV1Api()

    listed = v1.list_namespaced_config_map(namespace, _request_timeout=10)
    first_rv = listed.metadata.resource_version
    say(listed=[cm.metadata.name for cm in listed.items], rv=first_rv)

    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_config_map, namespace,
                       resource_version=first_rv, timeout_seconds=20,
                       allow_watch_bookmarks=True, _request_timeout=30):
        if ev["type"] == "BOOKMARK":
            continue
        cm = ev["object"]
        say(event=ev["type"], name=cm.metadata.name, data=cm.data,
            rv=cm.metadata.resource_version)
        if ev["type"] == "DELETED" and cm.metadata.name == stop_name:
            w.stop()
            break
    else:
        say(error="watch ended before the DELETED event")
        return 1

    say(ready=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    try:
        for ev in watch.Watch().stream(v1.list_namespaced_config_map, namespace,
                                       resource_version=first_rv, timeout_seconds=10,
                                       _request_timeout=30):
            say(error="unexpected event after compaction", event=ev["type"])
            return 1
        say(error="watch from a compacted resourceVersion ended without 410")
        return 1
    except ApiException as e:
        say(expired=e.status)

    relisted = v1.list_namespaced_config_map(namespace, _request_timeout=10)
    say(relisted=[cm.metadata.name for cm in relisted.items],
        rv=relisted.metadata.resource_version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
