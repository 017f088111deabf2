"""DistributedDataParallel on CPU (gloo): two processes reach the weights of one process that
sees the same global batches with the same seed."""

import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = textwrap.dedent('''
    import sys, torch
    from safetensors.torch import save_file
    from medassist.data.synthetic import random_binary_table
    from medassist.models import build_model
    from medassist.training import ArrayDataset, TrainConfig, Trainer, distributed
    from torch import nn

    out, batch_size = sys.argv[1], int(sys.argv[2])
    distributed.init_from_env()
    torch.set_num_threads(1)
    x, y = random_binary_table(n=240, n_features=6, seed=0)
    class Counting(ArrayDataset):
        rows = 0
        def get_batch(self, indices):
            Counting.rows += len(indices)
            return super().get_batch(indices)

    train = Counting(features=x[:180], targets=y[:180])
    val = ArrayDataset(features=x[180:], targets=y[180:])
    torch.manual_seed(0)
    model, _ = build_model("mlp", size="small", n_features=6, n_outputs=2, overrides={"dropout": 0.0})
    cfg = TrainConfig(epochs=3, batch_size=batch_size, patience=100, seed=7)
    Trainer(config=cfg, progress=False).fit(model, train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss())
    if distributed.is_main():
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out)
    open(out + f".rows{distributed.rank()}", "w").write(str(Counting.rows))
    distributed.barrier()
    distributed.shutdown()
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(300)
def test_two_gloo_processes_match_one_process(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    env_base = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    for name, batch in (("single", "60"), ("small_batch", "30")):
        single = subprocess.run([sys.executable, script, tmp_path / f"{name}.safetensors", batch], env=env_base,
                                capture_output=True, text=True, timeout=240)
        assert single.returncode == 0, single.stderr
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = {**env_base, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        procs.append(subprocess.Popen([sys.executable, script, tmp_path / "ddp.safetensors", "60"], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    a = load_file(str(tmp_path / "single.safetensors"))
    b = load_file(str(tmp_path / "ddp.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        # Same global batches, gradients averaged over 2 × 30 rows: equal up to float summation order.
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
    # each rank trained on half of every global batch: 3 epochs × 90 rows
    assert [int((tmp_path / f"ddp.safetensors.rows{r}").read_text()) for r in (0, 1)] == [270, 270]
    assert int((tmp_path / "single.safetensors.rows0").read_text()) == 540
    # and the comparison can fail: other global batches give other weights
    c = load_file(str(tmp_path / "small_batch.safetensors"))
    assert any(not torch.allclose(a[k], c[k], atol=1e-4) for k in a)
