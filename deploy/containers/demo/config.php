<?php
/**
 * In the image, this file replaces php/examples/config.php, whose AMQ_* constants name a broker on
 * 127.0.0.1: in a container the broker is another service, so the settings come from the environment
 * alone (EBATS_AMQP_URL, EBATS_PREFIX, ...), and this file defines nothing. An application that keeps
 * AMQ_* constants should read them from the environment too, e.g. define('AMQ_HOST', getenv('AMQ_HOST')).
 */
