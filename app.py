"""lstm-viz in a checkout:   streamlit run app.py   (installed: lstm-viz app)

The page lives in lstm_viz/app.py, so that an installed package has it. Streamlit executes this script again on
every interaction, while lstm_viz.app is imported once: main() is called here, on every run.
"""

from lstm_viz.app import main

main()
