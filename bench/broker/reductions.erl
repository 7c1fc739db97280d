%% Reductions of every process of the broker, summed by what the process is: a queue by its name, a
%% channel by its connection's name and number, anything else by its initial call. Written to OUT as
%% "key<TAB>reductions" lines. (rabbitmqctl eval drops "$" and what follows it from the expression: the
%% '$initial_call' key of a process dictionary is built from its character codes.)
InitialCall = list_to_atom([36 | "initial_call"]),
Queues = maps:from_list([{amqqueue:get_pid(Q), element(4, amqqueue:get_name(Q))} || Q <- rabbit_amqqueue:list()]),
Channel = fun(P) ->
  try
    [{connection, C}, {number, N}] = rabbit_channel:info(P, [connection, number]),
    [{client_properties, Props}] = rabbit_reader:info(C, [client_properties]),
    Name = case lists:keyfind(<<"connection_name">>, 1, Props) of {_, _, V} -> V; false -> unnamed end,
    {channel, Name, N}
  catch _:_ -> channel end
end,
Key = fun(P, Dict, Call) ->
  case maps:find(P, Queues) of
    {ok, Q} -> {queue, Q};
    error ->
      case lists:keyfind(InitialCall, 1, Dict) of
        {_, {rabbit_channel, init, 1}} -> Channel(P);
        {_, C} -> C;
        false -> Call
      end
  end
end,
Sum = fun(P, Acc) ->
  case erlang:process_info(P, [reductions, dictionary, initial_call]) of
    [{reductions, R}, {dictionary, D}, {initial_call, IC}] -> maps:update_with(Key(P, D, IC), fun(V) -> V + R end, R, Acc);
    undefined -> Acc
  end
end,
file:write_file("OUT", [io_lib:format("~0p\t~p~n", [K, V]) || {K, V} <- maps:to_list(lists:foldl(Sum, #{}, erlang:processes()))]).
