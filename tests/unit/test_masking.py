"""What the monitor, the admin and search mask (carrot.masking), and what they do not."""

import pytest

from carrot.masking import MASK, mask, mask_text, search_text, unmask


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgres://bob:s3cret@db:5432/x", f"postgres://bob:{MASK}@db:5432/x"),
        ("amqp://guest:guest@localhost:5672/", f"amqp://guest:{MASK}@localhost:5672/"),
        ("password=hunter2 other=1", f"password={MASK} other=1"),
        ("db_password: x", f"db_password: {MASK}"),
        ('{"api_key": "XYZ"}', f'{{"api_key": "{MASK}"}}'),
        ("Authorization: Bearer abc.def", f"Authorization: {MASK}"),
        # Left alone: no secret-looking name in front, or not a secret name at all.
        ("see https://example.com/path", "see https://example.com/path"),
        ("KeyError: 'x'", "KeyError: 'x'"),
        ("monkey: banana", "monkey: banana"),
        ("passed=True", "passed=True"),
        ("a plain s3cret in free text", "a plain s3cret in free text"),
    ],
)
def test_mask_text(text, shown):
    assert mask_text(text) == shown


def test_mask_reaches_keys_values_and_strings_at_any_depth():
    data = {
        "password": "p",
        "nested": [{"token": "t", "dsn": "redis://:pw@cache/0"}],
        "positional-looking": ["s3cret"],
    }
    assert mask(data) == {
        "password": MASK,
        "nested": [{"token": MASK, "dsn": f"redis://:{MASK}@cache/0"}],
        "positional-looking": ["s3cret"],  # a bare value cannot be known to be a secret
    }


def test_search_text_is_the_masked_arguments():
    text = search_text(["postgres://u:pw-123@db/x"], {"password": "pw-123", "order": 42})
    assert "pw-123" not in text and "42" in text and "order" in text


def test_a_mask_sent_back_unchanged_keeps_the_stored_secret():
    original = {"password": "p", "dsn": "redis://:pw@cache/0", "note": "n"}
    posted = {**mask(original), "note": "changed"}
    assert unmask(posted, original) == {**original, "note": "changed"}
