"""The lab fleet: simulated Windows servers that speak real HTTP, WS-Management, PSRP and NTLM."""
