"""A real RTSP server (GStreamer's gst-rtsp-server) for the tests: serves an H.264 MP4 file at
rtsp://127.0.0.1:PORT/cam, in real time, as a camera would (RTP over TCP or UDP, as the client
asks). Prints `ready` once it listens. Usage: python3 serve.py PORT FILE
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

port, path = sys.argv[1], sys.argv[2]
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
# One pipeline for every client; the file played at its own pace (qtdemux's timestamps).
factory.set_launch(
    f'( filesrc location="{path}" ! qtdemux ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )'
)
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    sys.exit(f"rtsp: cannot listen on 127.0.0.1:{port}")
print("ready", flush=True)
GLib.MainLoop().run()
