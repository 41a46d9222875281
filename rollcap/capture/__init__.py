"""rollcap capture."""
