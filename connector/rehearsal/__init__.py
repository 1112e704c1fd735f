"""`flask rehearse`: the connector over real HTTP on loopback with Vonage and MoEngage
stand-ins, walked through a send, its reports, a STOP and a START."""
