import streamlit as st

st.set_page_config(page_title="Empreinte", layout="wide")
st.title("Empreinte : l'empreinte de vos achats publics")
st.info("Tableau de bord en construction.")
