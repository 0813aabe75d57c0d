"""`atelier generate` as bulk users run it: as a named user here or through a server's API with a key, a
folder per run (nothing overwritten), A1111 prompts files, progress in steps, re-attaching to a run."""
import json

from PIL import Image

from gpu.png_meta import parse_a1111
from models_db import generation as gen
from tests.helpers import cli

SMALL = ("--steps", 2, "--width", 64, "--height", 64, "--sampler", "Euler")


def pngs(folder):
    return sorted(p.name for p in folder.glob("*.png"))


def meta(path):
    return parse_a1111(Image.open(path).info["parameters"])


def test_runs_as_the_named_user_one_folder_per_run_never_overwriting(alice, sd1, worker, tmp_path):
    out = tmp_path / "out"
    for _ in range(2):  # the same command twice: a second folder, nothing overwritten
        result = cli("generate", "--user", "alice", "--model", sd1["versionId"], "--prompt", "a kite", "--count", 2,
                     "--seed", 5, "--out", out, *SMALL)
        assert result.exit_code == 0, result.output
    runs = list(gen.GenerationRun.select().order_by(gen.GenerationRun.id))
    assert [(r.user_id, r.source, r.status) for r in runs] == [(alice[0].id, "cli", "Done")] * 2
    assert sorted(p.name for p in out.iterdir()) == sorted(str(r.id) for r in runs)
    for run in runs:
        assert pngs(out / str(run.id)) == ["00000-5.png", "00001-6.png"]
        assert f"in {out / str(run.id)}" in result.stderr or run.id != runs[-1].id
    assert "4/4" in result.stderr and "step" in result.stderr  # 2 images × 2 steps
    assert cli("generate", "--user", "nobody", "--model", sd1["versionId"], "--prompt", "x").exit_code != 0


def test_remote_url_runs_as_the_api_keys_owner(live_server, alice, bob, sd1, worker, tmp_path, monkeypatch):
    monkeypatch.setenv("ATELIER_API_KEY", bob[1])
    out = tmp_path / "remote"
    result = cli("generate", "--url", live_server, "--model", sd1["versionId"], "--prompt", "a remote kite",
                 "--count", 2, "--seed", 9, "--out", out, *SMALL)
    assert result.exit_code == 0, result.output
    run = gen.GenerationRun.get()
    assert (run.user_id, run.status) == (bob[0].id, "Done")
    assert pngs(out / str(run.id)) == ["00000-9.png", "00001-10.png"]
    assert meta(out / str(run.id) / "00001-10.png")["prompt"] == "a remote kite"
    # --api-key beats the environment; another user's run cannot be followed
    result = cli("generate", "--url", live_server, "--api-key", alice[1], "--follow", run.id, "--out", out)
    assert result.exit_code != 0 and "404" in result.output
    monkeypatch.delenv("ATELIER_API_KEY")
    assert "API key" in cli("generate", "--url", live_server, "--model", 1, "--prompt", "x").output


def test_prompts_file_comments_and_a1111_lines(alice, sd1, worker, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# my batch\n"
                       "a plain lighthouse\n"
                       "\n"
                       '--prompt "a red kite" --negative_prompt "blurry, dull" --steps 2 --seed 5 --width 64 '
                       "--height 64 --cfg_scale 6 --sampler_name Euler\n"
                       "  # an indented comment\n"
                       "--prompt a blue kite --n_iter 2 --steps 2\n")
    result = cli("generate", "--user", "alice", "--model", sd1["versionId"], "--prompts", prompts, "--seed", 100,
                 "--out", tmp_path / "out", "--width", 64, "--height", 64, "--sampler", "Euler", "--steps", 2)
    assert result.exit_code == 0, result.output
    runs = {r.id: r for r in gen.GenerationRun.select()}
    jobs = list(gen.GenerationJob.select().order_by(gen.GenerationJob.run, gen.GenerationJob.index))
    assert sorted((j.prompt, j.negative_prompt, j.seed) for j in jobs) == [
        ("a blue kite", "", 100), ("a blue kite", "", 101), ("a plain lighthouse", "", 100),
        ("a red kite", "blurry, dull", 5)]
    assert "#" not in "".join(j.prompt for j in jobs)
    red = next(j for j in jobs if j.prompt == "a red kite")
    written = meta(tmp_path / "out" / str(red.run_id) / "00000-5.png")
    assert (written["prompt"], written["negativePrompt"], written["cfgScale"]) == ("a red kite", "blurry, dull", 6)
    assert all(r.user_id == alice[0].id for r in runs.values())
    # an unknown option is a clear error naming its line, and nothing is queued
    prompts.write_text("# fine\nok\n--prompt x --bogus 3\n")
    result = cli("generate", "--user", "alice", "--model", sd1["versionId"], "--prompts", prompts)
    assert result.exit_code != 0 and "line 3: unknown option --bogus" in result.output
    assert gen.GenerationRun.select().count() == len(runs)


def test_follow_reattaches_and_downloads_a_runs_images(alice, sd1, request, tmp_path):
    queued = cli("generate", "--user", "alice", "--model", sd1["versionId"], "--prompt", "later", "--count", 2,
                 "--seed", 3, "--no-wait", *SMALL)
    assert queued.exit_code == 0, queued.output
    run_id = json.loads(queued.stdout)["runs"][0]["runId"]
    assert not (tmp_path / "out").exists()
    request.getfixturevalue("worker")  # a worker comes up while nobody follows
    result = cli("generate", "--user", "alice", "--follow", run_id, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert pngs(tmp_path / "out" / str(run_id)) == ["00000-3.png", "00001-4.png"]
    assert f"in {tmp_path / 'out' / str(run_id)}" in result.stderr
    again = cli("generate", "--user", "alice", "--follow", run_id, "--out", tmp_path / "out")  # nothing rewritten
    assert again.exit_code == 0 and pngs(tmp_path / "out" / str(run_id)) == ["00000-3.png", "00001-4.png"]
    assert cli("generate", "--user", "bob", "--follow", run_id).exit_code != 0
