"""The address guard of remote-content fetching: IPv6 forms that embed a private IPv4
address are refused, and the connection goes to the very addresses that were checked."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from continuo.api.app import create_app
from continuo.config import SecurityConfig, load_config
from continuo.core.fetch import Fetcher, NotPublic, public
from tests.support.configs import write_config
from tests.support.servers import ServerThread


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("10.0.0.1", False),
        ("127.0.0.1", False),
        ("2606:4700:4700::1111", True),
        ("::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::10.0.0.1", False),  # NAT64 to a private address
        ("64:ff9b::127.0.0.1", False),
        ("64:ff9b::169.254.169.254", False),  # NAT64 to the cloud metadata service
        ("64:ff9b::8.8.8.8", True),
        ("64:ff9b:1::8.8.8.8", False),  # local-use NAT64
        ("2002:a00:1::", False),  # 6to4 of 10.0.0.1
        ("2002:808:808::", True),  # 6to4 of 8.8.8.8
        ("::10.0.0.1", False),  # IPv4-compatible
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),  # Teredo
    ],
)
def test_embedded_ipv4_addresses_are_looked_through(address, allowed):
    assert public(address) is allowed


def test_nat64_address_of_a_private_host_is_refused(upstream, tmp_path):
    config = write_config(
        tmp_path / "fetch.toml",
        database_url=f"sqlite:///{tmp_path / 'fetch.db'}",
        upstream_url=upstream.url,
        provider_options="fetch_remote_content = true",
    )
    server = ServerThread(create_app(load_config(config))).start()
    try:
        port = upstream.url.rsplit(":", 1)[1]
        image = {"type": "input_image", "image_url": f"http://[64:ff9b::7f00:1]:{port}/files/cat.png"}
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0) as client:
            with pytest.raises(openai.BadRequestError) as error:
                client.responses.create(model="m", input=[{"role": "user", "content": [image]}])
        assert error.value.body["code"] == "url_not_allowed"
        assert error.value.body["param"] == "input[0].content[0].image_url"
        assert upstream.requests == []
    finally:
        server.stop()


async def test_connections_go_only_to_vetted_addresses(upstream):
    """Whatever a name resolves to at connection time is checked again there: the
    session itself refuses a host that resolves to a loopback address, so a DNS answer
    that changes after the first check cannot reach a private address."""
    port = upstream.url.rsplit(":", 1)[1]
    fetcher = Fetcher(SecurityConfig())
    try:
        with pytest.raises(aiohttp.ClientConnectorError) as error:
            async with fetcher.session.get(f"http://localhost:{port}/files/cat.png"):
                pass
        assert isinstance(error.value.os_error, NotPublic)
    finally:
        await fetcher.aclose()
    open_fetcher = Fetcher(SecurityConfig(allow_private_urls=True))
    try:
        async with open_fetcher.session.get(f"http://localhost:{port}/files/cat.png") as answer:
            assert answer.status == 200
    finally:
        await open_fetcher.aclose()
