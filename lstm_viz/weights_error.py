"""WeightsError, the one error for a weights file that lstm_viz cannot use, and the advice its messages end with."""

SAVE_HINT = "save the state_dict instead: torch.save(lstm.state_dict(), path)"


class WeightsError(ValueError):
    """A weights file we cannot use; the message says why and what was expected."""
