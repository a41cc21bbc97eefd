"""The pycromanager bridge refuses what cannot work, with a reason."""

import socket

import pytest

from mm_deepz.bridge import BridgeError, connect_micromanager, start_simulator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # pyjavaz's socket thread
def test_no_micro_manager_on_the_port_is_a_clear_error():
    port = _free_port()
    with pytest.raises(BridgeError, match=f"No Micro-Manager answered on port {port}"):
        connect_micromanager(port=port, timeout_ms=300)


def test_one_python_backend_core_at_a_time(world):
    with start_simulator(world):
        with pytest.raises(BridgeError, match="already active"):
            start_simulator(world)
        with pytest.raises(BridgeError, match="simulator core is active"):
            connect_micromanager()
    with start_simulator(world) as again:  # closing really released it
        assert again.core.getCameraDevice() == "Camera"
