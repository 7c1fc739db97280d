<?php
/**
 * Task handlers of topic "demo": the class is "Task" . ucfirst($topic) . "Model" and each method is the
 * task name followed by "Task". Returning means success. Throw
 * \Asynclib\Exception\RetryException to have the task run again later,
 * \Asynclib\Exception\TaskException to fail it for good, and
 * \Asynclib\Exception\ServiceException when a service it needs is down.
 */
class TaskDemoModel
{
    /** Ships the virtual goods of a paid order (event order_paied). */
    public function virtualShippingTask($params)
    {
        echo "virtualShippingTask: shipping the virtual goods of order ", self::order($params), "\n";
    }

    /** Closes an order that is still unpaid 10 seconds after its creation (event order_create). */
    public function closeOrderTask($params)
    {
        echo "closeOrderTask: closing order ", self::order($params), " if it is still unpaid\n";
    }

    /** Takes over a message that custom_scheduler.php received from another system. */
    public function orderAsyncTask($params)
    {
        echo "orderAsyncTask: ", json_encode($params, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE), "\n";
    }

    private static function order($params): string
    {
        return is_array($params) && isset($params['order_id']) ? (string) $params['order_id'] : '(no order_id)';
    }
}
