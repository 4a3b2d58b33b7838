"""Container instances in a real browser (issue 23): the Providers card shows the container and
its image, its Container panel shows CPU and memory and recreates it from another tag; the
System page lists the containers with their use."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import docker
from playwright.sync_api import Page, expect

from modelyard.instance_config import ContainerConfig, InstanceConfig
from tests.support.app_server import RunningApp
from tests.support.docker_engine import Engine
from tests.support.servers import free_port


def test_container_card_panel_and_system_page(
    page: Page,
    modelyard: Callable[..., RunningApp],
    engine: Engine,
    clean_containers: docker.DockerClient,
    llama_tag: str,
    tmp_path: Path,
    tiny_gguf: Path,
) -> None:
    repository = llama_tag.split(":")[0]
    clean_containers.images.get(llama_tag).tag(repository, "ui-other")
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    boxed = InstanceConfig(
        provider="llamacpp",
        id="boxed",
        base_url=f"http://127.0.0.1:{free_port()}",
        managed=True,
        model=str(models / "tiny.gguf"),
        ctx_size=256,
        container=ContainerConfig(image=llama_tag, memory="256m"),
    )
    app = modelyard([boxed], docker_host=engine.url, models_dir=models)
    try:
        page.goto(f"{app.url}/#/providers")
        card = page.locator('article[data-key="llamacpp/boxed"]')
        expect(card.get_by_test_id("state")).to_have_text("STOPPED")
        expect(card).to_contain_text(llama_tag)  # the configured image, before any container
        card.get_by_role("button", name="Start", exact=True).click()
        expect(card.get_by_test_id("state")).to_have_text("RUNNING", timeout=60_000)
        expect(card).to_contain_text("modelyard-llamacpp-boxed · running")

        card.get_by_role("button", name="Container", exact=True).click()
        use = card.get_by_test_id("container-use")
        expect(use).to_contain_text("%", timeout=30_000)
        expect(use).to_contain_text("of 268 MB")  # 256 MiB, in the units of the dashboard
        form = card.get_by_test_id("recreate")
        form.get_by_role("textbox").fill("ui-other")
        form.get_by_role("button", name="Recreate").click()
        expect(card).to_contain_text(f"{repository}:ui-other", timeout=60_000)
        expect(card.get_by_test_id("state")).to_have_text("RUNNING", timeout=60_000)

        page.goto(f"{app.url}/#/system")
        row = page.locator('#containers tr[data-key="llamacpp/boxed"]')
        expect(row).to_contain_text("running", timeout=30_000)
        expect(row.get_by_test_id("container-cpu")).to_contain_text("%")
    finally:
        clean_containers.images.remove(f"{repository}:ui-other")
