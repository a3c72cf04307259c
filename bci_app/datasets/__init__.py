"""bci_app.datasets"""
