"""The official Python client against rudder: create, list, watch and delete a Deployment.

Usage: deployment_client.py KUBECONFIG. Prints one line per step; exits non-zero on failure.
"""
import sys
import threading

from kubernetes import client, config, watch

config.load_kube_config(config_file=sys.argv[1])
apps = client.AppsV1Api()
ns = "default"

body = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="py-deploy", labels={"app": "py"}),
    spec=client.V1DeploymentSpec(
        replicas=2,
        selector=client.V1LabelSelector(match_labels={"app": "py"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "py"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
        ),
    ),
)

events = []
seen_delete = threading.Event()


def watch_deployments(resource_version):
    w = watch.Watch()
    for event in w.stream(apps.list_namespaced_deployment, ns, resource_version=resource_version,
                          timeout_seconds=30):
        events.append((event["type"], event["object"].metadata.name))
        if event["type"] == "DELETED":
            seen_delete.set()
            w.stop()


start = apps.list_namespaced_deployment(ns).metadata.resource_version
watcher = threading.Thread(target=watch_deployments, args=(start,))
watcher.start()

created = apps.create_namespaced_deployment(ns, body)
print("created", created.metadata.name, created.spec.strategy.type)
names = [d.metadata.name for d in apps.list_namespaced_deployment(ns, label_selector="app=py").items]
print("listed", names)
assert names == ["py-deploy"], names
patched = apps.patch_namespaced_deployment("py-deploy", ns, {"spec": {"replicas": 3}})
assert patched.spec.replicas == 3
apps.delete_namespaced_deployment("py-deploy", ns)
print("deleted")
assert seen_delete.wait(30), events
watcher.join(30)
types = [t for t, name in events if name == "py-deploy"]
print("watched", types)
# The patch is one MODIFIED; the deployment controller's status writes add more.
assert types[0] == "ADDED" and types[-1] == "DELETED", types
assert len(types) >= 3 and set(types[1:-1]) == {"MODIFIED"}, types
