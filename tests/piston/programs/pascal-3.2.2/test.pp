program test;

    begin
        writeln('OK');
    end.