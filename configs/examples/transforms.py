"""Row transforms for the examples (`data.transform` / `data.datasets[].transform`): each maps
one dataset row to `prompt` plus the columns the rewards read."""


def gsm8k(row: dict) -> dict:
    """GSM8K: the question is the prompt; the answer's final number (after `####`) is the answer."""
    return {"prompt": row["question"], "answer": row["answer"].split("####")[-1].strip().replace(",", "")}


def math_problem(row: dict) -> dict:
    """MATH-style rows (problem, solution): the solution's LaTeX is the gold answer for math_verify."""
    return {"prompt": row["problem"], "answer": row["solution"]}
