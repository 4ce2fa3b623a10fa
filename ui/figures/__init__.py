"""Pure figure builders, one module per page or view (style: what they share); no Streamlit, no torch."""
