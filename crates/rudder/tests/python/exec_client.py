"""The official Python client's exec (WebSocket, v4.channel.k8s.io) against rudder.

Usage: exec_client.py KUBECONFIG POD CONTAINER. Prints what the commands printed; exits
non-zero on failure.
"""
import sys

from kubernetes import client, config
from kubernetes.stream import stream

config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
pod, container = sys.argv[2], sys.argv[3]

out = stream(core.connect_get_namespaced_pod_exec, pod, "default", container=container,
             command=["sh", "-c", "echo py-$((6*7))"], stdout=True, stderr=True, stdin=False,
             tty=False)
print(out.strip())

# Interactive: stdin in, stdout and the exit status out.
ws = stream(core.connect_get_namespaced_pod_exec, pod, "default", container=container,
            command=["sh", "-c", "read line; echo got-$line; exit 5"], stdout=True,
            stderr=True, stdin=True, tty=False, _preload_content=False)
ws.write_stdin("hello\n")
ws.run_forever(timeout=20)
print(ws.read_stdout().strip())
print("exit", ws.returncode)
