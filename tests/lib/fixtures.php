<?php
/*
 * PHP classes extending the extension's exceptions, loaded by ExceptionsTest at run time (so a missing
 * parent class fails that test instead of aborting the whole run).
 */

declare(strict_types=1);

namespace Ebats\Tests\Fixtures;

use Asynclib\Exception\RetryException;
use Asynclib\Exception\TaskException;

class MyRetry extends RetryException
{
}

class PaymentDeclined extends TaskException
{
    public function __construct(public string $orderId, int $code = 0)
    {
        parent::__construct("payment declined for $orderId", $code);
    }
}

class SlowRetry extends RetryException
{
    public function __construct(string $message)
    {
        parent::__construct($message, 4, 60);
    }

    public function getInterval(): ?int
    {
        return parent::getInterval() * 2;
    }
}
