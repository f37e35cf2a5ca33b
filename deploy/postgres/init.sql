-- One database per service (docker-compose); each service creates its own schema in it at start-up.
CREATE DATABASE incidents;
CREATE DATABASE hotline;
CREATE DATABASE exchanges;
CREATE DATABASE pullbacks;
CREATE DATABASE compliance;
