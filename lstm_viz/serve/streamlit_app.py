"""The script `lstm-viz app` gives Streamlit (the checkout's app.py does the same): the page, run anew on every
interaction, so main() is called here on every run."""

from lstm_viz.app import main

main()
