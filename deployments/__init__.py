"""What turns the flows into a running platform: settings, the local-stack launcher, deploy steps."""
