"""A Kubernetes API emulator (kmock) on a loopback port, for fogd's kube executor tests.

Prints the port on stdout once listening, then serves until killed. The emulator keeps objects in
memory and answers list, watch, get, create (409 on a duplicate), patch and delete as the API
server does; it runs no controllers, so the test moves a Job's status itself.
"""
import asyncio
import sys

import kmock


async def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    async with kmock.KubernetesEmulator() as k8s, kmock.Server(k8s, port=port) as srv:
        print(srv.port, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
