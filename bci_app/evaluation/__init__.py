"""bci_app.evaluation"""
