"""`kiln chat` holds a conversation through the model's chat template: each turn answers,
/reset starts over, and the same question after a reset gets the same greedy answer."""
import subprocess

from kiln_testing import fetch_model


def test_chat_turns_and_reset(kiln_bin):
    model = fetch_model("smollm2-135m-instruct")
    question = "What is the capital of France?"
    stdin = f"{question}\nAnd of Italy?\n/reset\n{question}\n/exit\n"
    proc = subprocess.run([str(kiln_bin), "chat", "--model-path", model, "--temperature", "0",
                           "-n", "12", "--threads", "2"], input=stdin.encode(),
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    replies = proc.stdout.decode().split("\n")
    replies = [r for r in replies if r.strip()]
    assert len(replies) == 3, replies
    assert replies[0] == replies[2]  # after /reset, the conversation starts afresh
    assert replies[1] != replies[0]  # the second turn saw the first
    assert proc.stderr.decode().count("> ") == 5
